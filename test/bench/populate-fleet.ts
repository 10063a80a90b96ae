import { sql, type Kysely } from "kysely";
import { databaseForTests, type Bmdb } from "../../bmdb/bmdb.js";
import type { Database } from "../../bmdb/database.js";

/**
 * A fleet of machines with a realistic mix of tags, written by set-based SQL
 * straight into the tables (benchmark setup only: no history, no events).
 */
export async function populateFleet(bmdb: Bmdb, machines: number): Promise<void> {
  // One set-based statement per tag: the shape of a real fleet, quickly.
  const db = databaseForTests(bmdb);
  await sql`insert into machines (machine_id, created_at)
    select gen_random_uuid(), now() - (random() * interval '90 days') from generate_series(1, ${machines})`.execute(db);
  await sql`insert into machine_provided (machine_id, provider, provider_id, provider_location)
    select machine_id, (array['equinix','ovh','hetzner'])[1 + (abs(hashtext(machine_id::text)) % 3)], machine_id::text,
           (array['fra','ams','sjc','nrt'])[1 + (abs(hashtext(machine_id::text || 'l')) % 4)]
    from machines where abs(hashtext(machine_id::text)) % 10 < 7`.execute(db);
  await sql`insert into machine_agent_started (machine_id, agent_started_at, agent_public_key)
    select machine_id, now() - interval '2 hours', sha256(machine_id::text::bytea) from machines where abs(hashtext(machine_id::text || 'a')) % 10 < 9`.execute(db);
  // 80% heartbeat: most within a minute, one in eight of them an hour ago (stale).
  await sql`update machine_agent_started
    set agent_heartbeat_at = case when abs(hashtext(machine_id::text || 'h')) % 8 = 0 then now() - interval '1 hour' else now() - random() * interval '60 seconds' end
    where abs(hashtext(machine_id::text || 'b')) % 10 < 9`.execute(db);
  await sql`insert into machine_hardware_report (machine_id, hardware_report_raw, hardware_report_json, cpu_threads, memory_bytes, reported_at)
    select machine_id, '\\x0a00'::bytea, '{"report":{"cpu":[{"hardwareThreads":32}],"memoryInstalledBytes":"137438953472"}}'::jsonb, 32, 137438953472, now()
    from machine_agent_started where agent_heartbeat_at is not null and abs(hashtext(machine_id::text || 'w')) % 4 <> 0`.execute(db);
  await sql`insert into machine_installation_request (machine_id, generation, installation_request_raw, requested_at)
    select machine_id, 1, '\\x0801'::bytea, now() from machine_agent_started where abs(hashtext(machine_id::text || 'i')) % 10 = 0`.execute(db);
  await sql`insert into machine_installation_report (machine_id, generation, result, installation_report_raw, reported_at)
    select machine_id, 1, 'success', '\\x0801'::bytea, now() from machine_installation_request where abs(hashtext(machine_id::text || 'r')) % 2 = 0`.execute(db);
  // As after any bulk load: VACUUM sets the new rows' hint bits and the
  // visibility map now, instead of the first heartbeats dirtying (and, after
  // the load's checkpoint, logging whole) every page they read.
  await sql`vacuum analyze`.execute(db);
}

/** n machines, each with an agent key and a heartbeat of the last 30 s: the rest of a large fleet. Into an empty database, before any other machine. */
export async function insertFillerAgents(db: Kysely<Database>, n: number): Promise<void> {
  if (n <= 0) return;
  await sql`insert into machines (machine_id, created_at)
    select gen_random_uuid(), now() - interval '30 days' from generate_series(1, ${n}::int)`.execute(db);
  await sql`insert into machine_agent_started (machine_id, agent_started_at, agent_public_key, agent_heartbeat_at)
    select machine_id, now() - interval '30 days', sha256(machine_id::text::bytea), now() - random() * interval '30 seconds' from machines`.execute(db);
}

/** The given machines with their agents' keys (hex), registered and never heartbeating yet. */
export async function insertFleetAgents(db: Kysely<Database>, ids: readonly string[], keysHex: readonly string[]): Promise<void> {
  const chunk = 10_000;
  for (let i = 0; i < ids.length; i += chunk) {
    const someIds = ids.slice(i, i + chunk);
    await sql`insert into machines (machine_id) select unnest(${someIds}::uuid[])`.execute(db);
    await sql`insert into machine_agent_started (machine_id, agent_started_at, agent_public_key)
      select id, now(), decode(k, 'hex') from unnest(${someIds}::uuid[], ${keysHex.slice(i, i + chunk)}::text[]) as t(id, k)`.execute(db);
  }
}

/**
 * Settles a bulk load before measuring, as a database that has been serving
 * for a while is: otherwise the first seconds measured run beside autovacuum
 * (triggered by the inserts), hint-bit writes on every first touched page, and
 * the checkpoint of the load.
 */
export async function settleBulkLoad(db: Kysely<Database>): Promise<void> {
  await sql`vacuum (freeze, analyze)`.execute(db);
  await sql`checkpoint`.execute(db);
}
