import { Kysely, Migrator, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrationProvider } from "../migrations/index.js";
import { testBackends, type TestDatabase } from "../test/helpers/databases.js";
import { databaseForTests, type Bmdb } from "./bmdb.js";
import type { Database } from "./database.js";
import { migrate } from "./migrate.js";
import { openBmdb } from "./open.js";

describe.each(testBackends())("migrations on $name", (backend) => {
  let tdb: TestDatabase;
  let bmdb: Bmdb;
  beforeAll(async () => {
    tdb = await backend.create();
    bmdb = await openBmdb(tdb.url, { migrate: false });
  });
  afterAll(async () => {
    await bmdb?.close();
    await tdb?.drop();
  });

  it("0006 fills cpu_threads and memory_bytes of the reports stored before it from their JSON view", async () => {
    const db = databaseForTests(bmdb);
    const before = await new Migrator({ db, provider: migrationProvider }).migrateTo("0005_search_prefixes");
    expect(before.error).toBeUndefined();
    const reports: Record<string, unknown> = {
      "00000000-0000-4000-8000-000000000001": { report: { cpu: [{ hardwareThreads: 32 }, { hardwareThreads: 16 }], memoryInstalledBytes: "343597383680" } },
      "00000000-0000-4000-8000-000000000002": { report: { memoryInstalledBytes: "18446744073709551615" } },
      "00000000-0000-4000-8000-000000000003": { warning: ["no SMBIOS"] },
    };
    for (const [id, json] of Object.entries(reports)) {
      await sql`insert into machines (machine_id) values (${id})`.execute(db);
      await sql`insert into machine_hardware_report (machine_id, hardware_report_raw, hardware_report_json, reported_at)
        values (${id}, ${Uint8Array.of(10, 0)}, ${JSON.stringify(json)}::jsonb, now())`.execute(db);
    }

    expect(await migrate(db)).toEqual(["0006_hardware_report_totals", "0007_admission", "0008_heartbeat_in_agent_row"]);
    const rows = await db.selectFrom("machine_hardware_report").select(["machine_id", "cpu_threads", "memory_bytes"]).orderBy("machine_id").execute();
    expect(rows.map((r) => [r.cpu_threads, r.memory_bytes])).toEqual([
      [48n, "343597383680"],
      // A uint64 beyond bigint's range is kept whole.
      [0n, "18446744073709551615"],
      [0n, "0"],
    ]);
  });

  it("a second run applies nothing, and the schema has the tables of the Database interface", async () => {
    const db = databaseForTests(bmdb);
    await migrate(db);
    expect(await migrate(db)).toEqual([]);
    const tables = (await db.introspection.getTables()).map((t) => t.name).sort();
    const expected: (keyof Database)[] = [
      "machine_agent_request",
      "machine_agent_started",
      "machine_hardware_report",
      "machine_history",
      "machine_installation_report",
      "machine_installation_request",
      "machine_provided",
      "machines",
    ];
    expect(tables).toEqual(expected);
  });
});

describe.each(testBackends())("migration 0008 on $name", (backend) => {
  it("carries every heartbeat, stale flag and previous heartbeat into the agent's row, and drops the heartbeat table", async () => {
    const tdb = await backend.create();
    const bmdb = await openBmdb(tdb.url, { migrate: false });
    try {
      const db = databaseForTests(bmdb);
      expect((await new Migrator({ db, provider: migrationProvider }).migrateTo("0007_admission")).error).toBeUndefined();
      const [beating, silent] = ["00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"];
      const at = new Date("2026-11-01T10:00:00Z");
      const before = new Date("2026-11-01T09:00:00Z");
      for (const id of [beating, silent]) {
        await sql`insert into machines (machine_id) values (${id})`.execute(db);
        await sql`insert into machine_agent_started (machine_id, agent_started_at, agent_public_key) values (${id}, ${before}, sha256(${id}::text::bytea))`.execute(db);
      }
      await sql`insert into machine_agent_heartbeat (machine_id, agent_heartbeat_at, stale, previous_heartbeat_at, previous_stale)
        values (${beating}, ${at}, true, ${before}, true)`.execute(db);

      expect(await migrate(db)).toEqual(["0008_heartbeat_in_agent_row"]);
      const rows = await db
        .selectFrom("machine_agent_started")
        .select(["machine_id", "agent_heartbeat_at", "stale", "previous_heartbeat_at", "previous_stale"])
        .orderBy("machine_id")
        .execute();
      expect(rows).toEqual([
        { machine_id: beating, agent_heartbeat_at: at, stale: true, previous_heartbeat_at: before, previous_stale: true },
        { machine_id: silent, agent_heartbeat_at: null, stale: false, previous_heartbeat_at: null, previous_stale: false },
      ]);
      expect((await db.introspection.getTables()).map((t) => t.name)).not.toContain("machine_agent_heartbeat");
    } finally {
      await bmdb.close();
      await tdb.drop();
    }
  });
});

// Servers starting on the same empty database at the same moment must all
// come up with one schema. Only meaningful on a shared server.
describe.runIf(process.env.TEST_DATABASE_URL)("concurrent migrations on postgres", () => {
  it("three migrators racing on an empty database all succeed, each migration applied by exactly one", async () => {
    const [factory] = testBackends().filter((b) => b.name === "postgres");
    const tdb = await factory!.create();
    const dbs = [0, 1, 2].map(() => {
      const pool = new pg.Pool({ connectionString: tdb.url, max: 2 });
      // Dropping the database terminates connections a pool may still be closing.
      pool.on("error", () => {});
      return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    });
    try {
      const applied = await Promise.all(dbs.map((db) => migrate(db)));
      expect(applied.flat().sort()).toEqual(Object.keys(await migrationProvider.getMigrations()).sort());
    } finally {
      await Promise.all(dbs.map((db) => db.destroy()));
      await tdb.drop();
    }
  });
});
