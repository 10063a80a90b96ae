import { sql, type Kysely } from "kysely";

// Search by prefix (ListMachines' search, the web view's search box): index
// ranges for provider IDs and agent key fingerprints (SHA-256 of the key, as
// hex, as lib/fingerprint.ts makes them), so that a search is an index
// lookup instead of hashing every key of the fleet. text_pattern_ops: LIKE
// 'prefix%' uses the index whatever the database's collation.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index machine_provided_provider_id_prefix on machine_provided (provider_id text_pattern_ops)`.execute(db);
  await sql`create index machine_agent_started_fingerprint_prefix on machine_agent_started ((encode(sha256(agent_public_key), 'hex')) text_pattern_ops)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index machine_agent_started_fingerprint_prefix`.execute(db);
  await sql`drop index machine_provided_provider_id_prefix`.execute(db);
}
