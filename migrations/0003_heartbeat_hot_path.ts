import { sql, type Kysely } from "kysely";

// The heartbeat hot path (group commit) rewrites one machine_agent_heartbeat
// row per heartbeat. Choices made for a fleet of 10^5–10^6 machines:
//
// - No index on agent_heartbeat_at. Every heartbeat changes that column, so an
//   index on it turns every update into a non-HOT update that writes a new
//   index entry (and leaves a dead one) in both the primary key and that index.
//   Without it, and with free space left in each page (fillfactor), the update
//   is HOT: one heap tuple, no index writes. Its readers are the stale sweeper
//   (a sequential scan of this narrow table every --stale-sweep-interval) and
//   the heartbeat filters of ListMachines, which join by machine_id anyway.
// - A foreign key to machine_agent_started, deleted with it: revoking an agent
//   deletes its heartbeat in the same cascade, and a heartbeat batch that raced
//   the revocation cannot re-create the row (the insert's key check fails and
//   that heartbeat is refused), although batches run at READ COMMITTED. Updates
//   of an existing row do not touch the key, so they pay nothing for it.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("machine_agent_heartbeat_at").ifExists().execute();
  await sql`alter table machine_agent_heartbeat set (fillfactor = 70)`.execute(db);
  await sql`delete from machine_agent_heartbeat h where not exists (select 1 from machine_agent_started s where s.machine_id = h.machine_id)`.execute(db);
  await db.schema
    .alterTable("machine_agent_heartbeat")
    .addForeignKeyConstraint("machine_agent_heartbeat_agent_fk", ["machine_id"], "machine_agent_started", ["machine_id"], (c) => c.onDelete("cascade"))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("machine_agent_heartbeat").dropConstraint("machine_agent_heartbeat_agent_fk").execute();
  await sql`alter table machine_agent_heartbeat reset (fillfactor)`.execute(db);
  await db.schema.createIndex("machine_agent_heartbeat_at").on("machine_agent_heartbeat").columns(["agent_heartbeat_at", "machine_id"]).execute();
}
