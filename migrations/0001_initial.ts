import { sql, type Kysely } from "kysely";

// The tag model: one table per tag, keyed by machine_id, deleted with the
// machine; history is keyed by machine_id too but has no foreign key so that
// it outlives the machine. Only types and constraints CockroachDB also accepts.

// Migrations see the database as it was when they were written, not the
// current Database interface, hence the untyped Kysely.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("machines")
    .addColumn("machine_id", "uuid", (c) => c.primaryKey())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  const tag = (name: string) =>
    db.schema
      .createTable(name)
      .addColumn("machine_id", "uuid", (c) => c.primaryKey().references("machines.machine_id").onDelete("cascade"));

  await tag("machine_provided")
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("provider_id", "text", (c) => c.notNull())
    .addColumn("provider_status", "text")
    .addColumn("provider_address", "text")
    .addColumn("provider_location", "text")
    .addUniqueConstraint("machine_provided_provider_id_unique", ["provider", "provider_id"])
    .execute();

  await tag("machine_agent_started")
    .addColumn("agent_started_at", "timestamptz", (c) => c.notNull())
    .addColumn("agent_public_key", "bytea", (c) => c.notNull())
    .execute();

  await tag("machine_agent_heartbeat")
    .addColumn("agent_heartbeat_at", "timestamptz", (c) => c.notNull())
    .execute();

  await tag("machine_hardware_report")
    .addColumn("hardware_report_raw", "bytea", (c) => c.notNull())
    .addColumn("hardware_report_json", "jsonb", (c) => c.notNull())
    .addColumn("reported_at", "timestamptz", (c) => c.notNull())
    .execute();

  await tag("machine_installation_request")
    .addColumn("generation", "bigint", (c) => c.notNull())
    .addColumn("installation_request_raw", "bytea", (c) => c.notNull())
    .addColumn("requested_at", "timestamptz", (c) => c.notNull())
    .execute();

  await tag("machine_installation_report")
    .addColumn("generation", "bigint", (c) => c.notNull())
    .addColumn("result", "text", (c) => c.notNull().check(sql`result in ('success', 'error')`))
    .addColumn("error_message", "text")
    .addColumn("installation_report_raw", "bytea", (c) => c.notNull())
    .addColumn("reported_at", "timestamptz", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("machine_history")
    .addColumn("event_id", "uuid", (c) => c.primaryKey())
    .addColumn("machine_id", "uuid", (c) => c.notNull())
    .addColumn("occurred_at", "timestamptz", (c) => c.notNull())
    .addColumn("event", "text", (c) => c.notNull())
    .addColumn("details", "jsonb", (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex("machine_history_machine_event")
    .on("machine_history")
    .columns(["machine_id", "event_id"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of [
    "machine_history",
    "machine_installation_report",
    "machine_installation_request",
    "machine_hardware_report",
    "machine_agent_heartbeat",
    "machine_agent_started",
    "machine_provided",
    "machines",
  ]) {
    await db.schema.dropTable(t).execute();
  }
}
