import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseForTests } from "../bmdb.js";
import { openBmdb } from "../open.js";
import { durablePGliteOptions, pgliteSyncs } from "./pglite-durable-fs.js";

const ROOT = join(import.meta.dirname, "..", "..");

describe("PGlite on disk syncs what it commits", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "bmdb-durable-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs with fsync on and syncs the host file at every commit", async () => {
    const pg = new PGlite(durablePGliteOptions(join(dir, "direct")));
    try {
      expect((await pg.query<{ fsync: string }>("show fsync")).rows[0]?.fsync).toBe("on");
      expect((await pg.query<{ wal_sync_method: string }>("show wal_sync_method")).rows[0]?.wal_sync_method).toBe("fsync");
      await pg.query("create table t (x int)");
      const before = pgliteSyncs.count;
      for (let i = 0; i < 20; i++) await pg.query("insert into t values ($1)", [i]);
      // At least the WAL once per commit.
      expect(pgliteSyncs.count - before).toBeGreaterThanOrEqual(20);
      // A read-only statement writes no WAL, so it syncs nothing.
      const afterWrites = pgliteSyncs.count;
      for (let i = 0; i < 20; i++) await pg.query("select count(*) from t");
      expect(pgliteSyncs.count).toBe(afterWrites);
    } finally {
      await pg.close();
    }
  });

  it("leaves PGlite's stock setting alone elsewhere: without it nothing is synced", async () => {
    const pg = new PGlite(join(dir, "stock"));
    try {
      expect((await pg.query<{ fsync: string }>("show fsync")).rows[0]?.fsync).toBe("off");
      const before = pgliteSyncs.count;
      await pg.query("create table t (x int)");
      await pg.query("insert into t values (1)");
      expect(pgliteSyncs.count).toBe(before);
    } finally {
      await pg.close();
    }
  });

  it("is what the machine database opens on disk (in its worker), and a SIGKILLed writer loses no acknowledged commit", async () => {
    const dataDir = join(dir, "bmdb");
    const bmdb = await openBmdb(dataDir);
    try {
      const db = databaseForTests(bmdb);
      expect((await sql<{ fsync: string }>`show fsync`.execute(db)).rows[0]?.fsync).toBe("on");
      expect((await sql<{ wal_sync_method: string }>`show wal_sync_method`.execute(db)).rows[0]?.wal_sync_method).toBe("fsync");
      // New WAL segments are not zero-filled in the foreground; checkpoints come every 256 MB of WAL.
      expect((await sql<{ wal_init_zero: string }>`show wal_init_zero`.execute(db)).rows[0]?.wal_init_zero).toBe("off");
      expect((await sql<{ max_wal_size: string }>`show max_wal_size`.execute(db)).rows[0]?.max_wal_size).toBe("256MB");
    } finally {
      await bmdb.close();
    }
    // A process that creates machines, says which were acknowledged, and is killed mid-stream.
    const script = [
      `import { openBmdb } from ${JSON.stringify(join(ROOT, "bmdb", "index.ts"))};`,
      `const b = await openBmdb(${JSON.stringify(dataDir)});`,
      `for (let i = 0; ; i++) { const id = await b.createMachine({ provider: { provider: "p", providerId: "kill-" + i } }); console.log(id); if (i === 30) process.kill(process.pid, "SIGKILL"); }`,
    ].join("\n");
    const run = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    expect(run.signal).toBe("SIGKILL");
    const acknowledged = run.stdout.trim().split("\n").filter(Boolean);
    expect(acknowledged.length).toBe(31);
    const reopened = await openBmdb(dataDir);
    try {
      for (const id of acknowledged) expect((await reopened.getMachine(id)).provided?.providerId).toMatch(/^kill-\d+$/);
    } finally {
      await reopened.close();
    }
  });
});
