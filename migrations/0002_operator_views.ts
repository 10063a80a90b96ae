import { sql, type Kysely } from "kysely";

// For the operator's fleet views: a stale flag so that "went stale" is
// recorded once by a sweeper instead of on every heartbeat, and the indexes
// that keep filtered list pages fast on large fleets.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("machine_agent_heartbeat")
    .addColumn("stale", "boolean", (c) => c.notNull().defaultTo(sql`false`))
    .execute();
  // The heartbeat before the last one and whether it was stale, written by the
  // upsert itself: the heartbeat learns its predecessor from RETURNING instead
  // of a read that would make concurrent heartbeats conflict under SERIALIZABLE.
  await db.schema.alterTable("machine_agent_heartbeat").addColumn("previous_heartbeat_at", "timestamptz").execute();
  await db.schema
    .alterTable("machine_agent_heartbeat")
    .addColumn("previous_stale", "boolean", (c) => c.notNull().defaultTo(sql`false`))
    .execute();
  await db.schema.createIndex("machine_agent_heartbeat_at").on("machine_agent_heartbeat").columns(["agent_heartbeat_at", "machine_id"]).execute();
  await db.schema.createIndex("machine_provided_provider").on("machine_provided").columns(["provider", "machine_id"]).execute();
  await db.schema.createIndex("machine_agent_started_at").on("machine_agent_started").columns(["agent_started_at", "machine_id"]).execute();
  await db.schema.createIndex("machine_history_machine_time").on("machine_history").columns(["machine_id", "occurred_at", "event_id"]).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("machine_history_machine_time").execute();
  await db.schema.dropIndex("machine_agent_started_at").execute();
  await db.schema.dropIndex("machine_provided_provider").execute();
  await db.schema.dropIndex("machine_agent_heartbeat_at").execute();
  await db.schema.alterTable("machine_agent_heartbeat").dropColumn("previous_stale").execute();
  await db.schema.alterTable("machine_agent_heartbeat").dropColumn("previous_heartbeat_at").execute();
  await db.schema.alterTable("machine_agent_heartbeat").dropColumn("stale").execute();
}
