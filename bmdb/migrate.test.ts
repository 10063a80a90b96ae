import { Migrator, sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrationProvider } from "../migrations/index.js";
import { testBackends, type TestDatabase } from "../test/helpers/databases.js";
import { databaseForTests, type Bmdb } from "./bmdb.js";
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

  it("0005 fills cpu_threads and memory_bytes of the reports stored before it from their JSON view", async () => {
    const db = databaseForTests(bmdb);
    const before = await new Migrator({ db, provider: migrationProvider }).migrateTo("0004_heartbeat_batch_function");
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

    expect(await migrate(db)).toEqual(["0005_hardware_report_totals"]);
    const rows = await db.selectFrom("machine_hardware_report").select(["machine_id", "cpu_threads", "memory_bytes"]).orderBy("machine_id").execute();
    expect(rows.map((r) => [r.cpu_threads, r.memory_bytes])).toEqual([
      [48n, "343597383680"],
      // A uint64 beyond bigint's range is kept whole.
      [0n, "18446744073709551615"],
      [0n, "0"],
    ]);
  });
});
