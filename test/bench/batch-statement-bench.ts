// The group-commit statement by itself (no server, no TLS): batches of
// BENCH_BATCH heartbeats of random agents of a 10,000-agent fleet, through
// bmdb's heartbeatBatch, on PostgreSQL databases holding BENCH_SIZES machines,
// each at two schemas: migration 0007 (the heartbeat in its own table: two
// primary-key lookups per heartbeat) and the latest (0008: the heartbeat in the
// agent's row, one lookup). Prints mean / p50 / p99 per batch for each, and
// how many of the row updates were HOT; asserts nothing. Environment:
// BENCH_DATABASE_URL, BENCH_SIZES [10000,1000000], BENCH_BATCH [64],
// BENCH_ROUNDS [600], BENCH_REPEATS [3].
import { randomBytes, randomUUID } from "node:crypto";
import { Migrator, sql, type Kysely } from "kysely";
import { databaseForTests, type Bmdb } from "../../bmdb/bmdb.js";
import type { Database } from "../../bmdb/database.js";
import { DEFAULT_THRESHOLDS } from "../../bmdb/fleet.js";
import { heartbeatBatch, type BatchHeartbeat } from "../../bmdb/heartbeat-batch.js";
import { openBmdb } from "../../bmdb/index.js";
import { migrationProvider } from "../../migrations/index.js";
import { createBenchDatabase, type BenchDatabase } from "./bench-database.js";
import { insertFillerAgents, insertFleetAgents, settleBulkLoad } from "./populate-fleet.js";

process.noDeprecation = true;
const FLEET = 10_000;
const SIZES = (process.env.BENCH_SIZES ?? "10000,1000000").split(",").map(Number);
const BATCH = Number(process.env.BENCH_BATCH ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 600);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const SCHEMAS = { "0007": "0007_admission", latest: undefined } as const;
type Schema = keyof typeof SCHEMAS;

interface Setup {
  label: string;
  database: BenchDatabase;
  bmdb: Bmdb;
  db: Kysely<Database>;
}

const fleet = Array.from({ length: FLEET }, () => ({ machineId: randomUUID(), publicKey: new Uint8Array(randomBytes(32)) }));

async function setup(size: number, schema: Schema): Promise<Setup> {
  const database = await createBenchDatabase("bmaas_batchbench");
  const bmdb = await openBmdb(database.url, { migrate: false });
  const db = databaseForTests(bmdb);
  const migrator = new Migrator({ db, provider: migrationProvider });
  const to = SCHEMAS[schema];
  const { error } = to ? await migrator.migrateTo(to) : await migrator.migrateToLatest();
  if (error) throw error;
  // The rest of the machines first, with agents and recent heartbeats; the fleet's after them.
  const filler = size - FLEET;
  if (schema === "latest") {
    await insertFillerAgents(db, filler);
  } else if (filler > 0) {
    // 0007's schema: the heartbeat in its own table.
    await sql`insert into machines (machine_id, created_at) select gen_random_uuid(), now() - interval '30 days' from generate_series(1, ${filler}::int)`.execute(db);
    await sql`insert into machine_agent_started (machine_id, agent_started_at, agent_public_key)
      select machine_id, now() - interval '30 days', sha256(machine_id::text::bytea) from machines`.execute(db);
    await sql`insert into machine_agent_heartbeat (machine_id, agent_heartbeat_at)
      select machine_id, now() - random() * interval '30 seconds' from machine_agent_started`.execute(db);
  }
  await insertFleetAgents(db, fleet.map((a) => a.machineId), fleet.map((a) => Buffer.from(a.publicKey).toString("hex")));
  await settleBulkLoad(db);
  return { label: `${schema === "0007" ? "two lookups (0007)" : "one lookup (latest)"}, ${size.toLocaleString("en-US")} machines`, database, bmdb, db };
}

function randomBatch(): BatchHeartbeat[] {
  const picked = new Set<number>();
  while (picked.size < BATCH) picked.add(Math.floor(Math.random() * FLEET));
  return [...picked].map((i) => fleet[i]!);
}

/** Batch times in ms, sorted. */
async function run(s: Setup, rounds: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const batch = randomBatch();
    const t0 = performance.now();
    const outcomes = await heartbeatBatch(s.db, new Date(), DEFAULT_THRESHOLDS, { maxPendingPerMachine: 10, maxPendingTotal: 1000 }, batch);
    times.push(performance.now() - t0);
    if (outcomes.some((o) => !o.authenticated)) throw new Error(`${s.label}: a heartbeat did not authenticate`);
  }
  return times.sort((a, b) => a - b);
}

async function hotShare(s: Setup): Promise<string> {
  const { rows } = await sql<{ upd: string; hot: string }>`
    select coalesce(sum(n_tup_upd), 0)::text as upd, coalesce(sum(n_tup_hot_upd), 0)::text as hot
    from pg_stat_user_tables where relname in ('machine_agent_started', 'machine_agent_heartbeat')`.execute(s.db);
  const { upd, hot } = rows[0]!;
  return `${hot} of ${upd} row updates HOT`;
}

async function main(): Promise<void> {
  const setups: Setup[] = [];
  try {
    for (const schema of Object.keys(SCHEMAS) as Schema[]) for (const size of SIZES) setups.push(await setup(size, schema));
    // Every fleet agent heartbeats twice before measuring (first heartbeats, warm caches).
    for (const s of setups) await run(s, Math.ceil((2 * FLEET) / BATCH));
    const means = new Map<string, number[]>();
    for (let r = 0; r < REPEATS; r++) {
      for (const s of setups) {
        const t = await run(s, ROUNDS);
        const at = (p: number) => t[Math.min(t.length - 1, Math.floor(p * t.length))]!;
        const mean = t.reduce((a, b) => a + b, 0) / t.length;
        means.set(s.label, [...(means.get(s.label) ?? []), mean]);
        process.stdout.write(`${s.label}: batch of ${BATCH}, mean ${mean.toFixed(2)} ms, p50 ${at(0.5).toFixed(2)}, p99 ${at(0.99).toFixed(2)}\n`);
      }
    }
    process.stdout.write("\n");
    for (const s of setups) {
      const m = means.get(s.label)!;
      process.stdout.write(`${s.label}: mean per batch ${Math.min(...m).toFixed(2)}–${Math.max(...m).toFixed(2)} ms over ${REPEATS} runs; ${await hotShare(s)}\n`);
    }
  } finally {
    for (const s of setups) {
      await s.bmdb.close();
      await s.database.drop();
    }
  }
}

await main();
