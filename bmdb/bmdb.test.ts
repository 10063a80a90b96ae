import { randomBytes, randomUUID } from "node:crypto";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyFingerprint } from "../lib/fingerprint.js";
import { testBackends, type TestDatabase } from "../test/helpers/databases.js";
import { databaseForTests, type Bmdb } from "./bmdb.js";
import { MachineNotFoundError, ProviderIdTakenError } from "./errors.js";
import { SWEEP_CHUNK } from "./history.js";
import { openBmdb } from "./open.js";

// Bmdb's operations through its facade, on every backend: machines, agents
// and their heartbeats, installation generations, history. Migrations are
// tested in migrate.test.ts, the transaction layer in private/transact.test.ts.

describe.each(testBackends())("bmdb on $name", (backend) => {
  let tdb: TestDatabase;
  let bmdb: Bmdb;

  beforeAll(async () => {
    tdb = await backend.create();
    bmdb = await openBmdb(tdb.url);
  });
  afterAll(async () => {
    await bmdb?.close();
    await tdb?.drop();
  });

  it("authenticates only the registered (machine, key) pair", async () => {
    const id = await bmdb.createMachine();
    const key = randomBytes(32);
    expect(await bmdb.heartbeat({ machineId: id, publicKey: key })).toEqual({ authenticated: false, refusal: "pending_new" });
    await bmdb.registerAgent(id, key);
    expect(await bmdb.heartbeat({ machineId: id, publicKey: key })).toEqual({ authenticated: true, installationRequest: null });
    expect(await bmdb.heartbeat({ machineId: id, publicKey: randomBytes(32) })).toEqual({ authenticated: false, refusal: "pending_new" });
    const m = await bmdb.getMachine(id);
    expect(m.agentHeartbeat?.lastHeartbeatAt).toBeInstanceOf(Date);
    expect(m.agentStarted?.keyFingerprint).toBe(keyFingerprint(key));
  });

  it("writes nothing for an unauthenticated heartbeat", async () => {
    const id = await bmdb.createMachine();
    await bmdb.registerAgent(id, randomBytes(32));
    const r = await bmdb.heartbeat({
      machineId: id,
      publicKey: randomBytes(32),
      hardwareReport: { raw: Uint8Array.of(1, 2, 3), json: {}, cpuThreads: 1, memoryBytes: 1n },
    });
    expect(r.authenticated).toBe(false);
    const m = await bmdb.getMachine(id);
    expect(m.agentHeartbeat).toBeNull();
    expect(m.hardwareReport).toBeNull();
  });

  it("refuses a second machine with the same provider id and writes nothing", async () => {
    const pid = `p-${randomBytes(4).toString("hex")}`;
    const first = await bmdb.createMachine({ provider: { provider: "equinix", providerId: pid } });
    const before = (await bmdb.fleetStats()).counters.machines;
    await expect(bmdb.createMachine({ provider: { provider: "equinix", providerId: pid } })).rejects.toBeInstanceOf(ProviderIdTakenError);
    expect((await bmdb.fleetStats()).counters.machines).toBe(before);
    expect((await bmdb.getMachine(first)).provided?.providerId).toBe(pid);
    // The same provider id at another provider is a different machine.
    await expect(bmdb.createMachine({ provider: { provider: "ovh", providerId: pid } })).resolves.toMatch(/^[0-9a-f-]{36}$/);
  });

  it("reports unknown machines as not found", async () => {
    const unknown = "00000000-0000-4000-8000-000000000000";
    await expect(bmdb.getMachine(unknown)).rejects.toBeInstanceOf(MachineNotFoundError);
    await expect(bmdb.registerAgent(unknown, randomBytes(32))).rejects.toBeInstanceOf(MachineNotFoundError);
    await expect(bmdb.setInstallationRequest(unknown, 1n, Uint8Array.of(8, 1))).rejects.toBeInstanceOf(MachineNotFoundError);
  });

  it("keeps generations beyond 2^53 exact", async () => {
    const id = await bmdb.createMachine();
    const key = randomBytes(32);
    await bmdb.registerAgent(id, key);
    const big = 2n ** 62n + 1n;
    await bmdb.setInstallationRequest(id, big, Uint8Array.of(8, 9));
    const m = await bmdb.getMachine(id);
    expect(m.installationRequest?.generation).toBe(big);
    expect(m.installationPending).toBe(true);
    await bmdb.heartbeat({
      machineId: id,
      publicKey: key,
      installationReport: { generation: big, result: "success", raw: Uint8Array.of(8, 1) },
    });
    const after = await bmdb.getMachine(id);
    expect(after.installationReport?.generation).toBe(big);
    expect(after.installationPending).toBe(false);
  });

  it("records one history event per operation, in order, and keeps them when the machine is deleted", async () => {
    const id = await bmdb.createMachine();
    await bmdb.registerAgent(id, randomBytes(32));
    await bmdb.setInstallationRequest(id, 5n, Uint8Array.of(8, 5));
    const oldestFirst = async () => (await bmdb.getHistory(id, 100)).events.map((e) => e.event).reverse();
    expect(await oldestFirst()).toEqual(["machine_created", "agent_registered", "installation_requested"]);
    await bmdb.deleteMachine(id);
    await expect(bmdb.getMachine(id)).rejects.toBeInstanceOf(MachineNotFoundError);
    expect(await oldestFirst()).toEqual(["machine_created", "agent_registered", "installation_requested", "machine_deleted"]);
  });

  // Last in this file: the sweep marks every machine of this database whose heartbeat is old.
  it("records going stale for every machine a sweep finds, in transactions of SWEEP_CHUNK, each announced", async () => {
    const n = 2 * SWEEP_CHUNK + 1;
    const db = databaseForTests(bmdb);
    const ids = Array.from({ length: n }, () => randomUUID());
    const lastHeartbeatAt = new Date(Date.now() - 3_600_000);
    await sql`insert into machines (machine_id) select unnest(${ids}::uuid[])`.execute(db);
    await sql`insert into machine_agent_started (machine_id, agent_started_at, agent_public_key, agent_heartbeat_at)
      select id, now(), sha256(id::text::bytea), ${lastHeartbeatAt} from unnest(${ids}::uuid[]) as id`.execute(db);
    const mine = new Set<string>(ids);
    const announced = new Set<string>();
    const unsubscribe = await bmdb.subscribe((d) => {
      if (d.kind === "event" && d.event.event === "heartbeat_stale" && mine.has(d.event.machineId)) announced.add(d.event.machineId);
    });
    try {
      expect((await bmdb.sweepStale()).filter((id) => mine.has(id))).toHaveLength(n);
      expect((await bmdb.sweepStale()).filter((id) => mine.has(id))).toEqual([]);
      await expect.poll(() => announced.size, { timeout: 15_000 }).toBe(n);
    } finally {
      unsubscribe();
    }
    const rows = await db
      .selectFrom("machine_history")
      .select(["machine_id", "details"])
      .where("event", "=", "heartbeat_stale")
      .where(sql<boolean>`machine_id = any(${ids}::uuid[])`)
      .execute();
    expect(new Set(rows.map((r) => r.machine_id)).size).toBe(n);
    expect(rows).toHaveLength(n);
    expect(rows[0]!.details).toEqual({ lastHeartbeatAt: lastHeartbeatAt.toISOString() });
  });
});

// SERIALIZABLE conflicts are real on PostgreSQL: hammer one machine's tags from
// many connections and check that retries absorb every 40001.
describe.runIf(process.env.TEST_DATABASE_URL)("serialization retries on postgres", () => {
  it("concurrent heartbeats of one machine all commit, retried as needed", async () => {
    const [factory] = testBackends().filter((b) => b.name === "postgres");
    const tdb = await factory!.create();
    const bmdb = await openBmdb(tdb.url, { poolSize: 8, maxAttempts: 50 });
    try {
      const id = await bmdb.createMachine();
      const key = randomBytes(32);
      await bmdb.registerAgent(id, key);
      const before = { ...bmdb.stats };
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          bmdb.heartbeat({
            machineId: id,
            publicKey: key,
            hardwareReport: { raw: Uint8Array.of(i), json: { i }, cpuThreads: i, memoryBytes: BigInt(i) },
            installationReport: { generation: BigInt(i + 1), result: "success", raw: Uint8Array.of(8, i + 1) },
          }),
        ),
      );
      expect(results.every((r) => r.authenticated)).toBe(true);
      expect(bmdb.stats.executed - before.executed).toBe(40);
      expect(bmdb.stats.failed).toBe(before.failed);
      expect(bmdb.stats.attempts - before.attempts).toBe(40 + (bmdb.stats.retried - before.retried));
      // Contention on one row set under SERIALIZABLE does produce retries.
      expect(bmdb.stats.retried - before.retried).toBeGreaterThan(0);
    } finally {
      await bmdb.close();
      await tdb.drop();
    }
  });
});
