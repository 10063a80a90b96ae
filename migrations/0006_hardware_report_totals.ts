import { sql, type Kysely } from "kysely";

// The two figures of a hardware report that fleet stats sum, as typed columns
// the heartbeat path writes (server/heartbeat-request.ts computes them from
// the decoded report): fleet queries read columns, not the protobuf JSON
// names inside hardware_report_json, so bmdb stays ignorant of protobuf.
//   cpu_threads   hardware threads over every CPU package
//   memory_bytes  installed memory; numeric(20,0) because the report's field
//                 is a uint64, which a bigint cannot hold whole
// Reports stored before this migration are filled once from their JSON view
// (the proto3 JSON names are this backfill's contract, here and nowhere else).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("machine_hardware_report")
    .addColumn("cpu_threads", "bigint")
    .addColumn("memory_bytes", sql`numeric(20, 0)`)
    .execute();
  await sql`
    update machine_hardware_report set
      cpu_threads = (
        select coalesce(sum((c->>'hardwareThreads')::bigint), 0)
        from jsonb_array_elements(coalesce(hardware_report_json->'report'->'cpu', '[]'::jsonb)) as c),
      memory_bytes = coalesce((hardware_report_json->'report'->>'memoryInstalledBytes')::numeric, 0)
  `.execute(db);
  await db.schema
    .alterTable("machine_hardware_report")
    .alterColumn("cpu_threads", (c) => c.setNotNull())
    .alterColumn("memory_bytes", (c) => c.setNotNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("machine_hardware_report").dropColumn("memory_bytes").dropColumn("cpu_threads").execute();
}
