import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testBackends, type TestDatabase } from "../test/helpers/databases.js";
import { keyFingerprint } from "../lib/fingerprint.js";
import { databaseForTests } from "./bmdb.js";
import { openBmdb, type Bmdb } from "./index.js";

// The database side of admission: refused heartbeats (batch and single path)
// recording pending requests within bounds, decisions, import.
describe.each(testBackends())("admission in bmdb on $name", (backend) => {
  let tdb: TestDatabase;
  let bmdb: Bmdb;

  beforeAll(async () => {
    tdb = await backend.create();
    bmdb = await openBmdb(tdb.url, { admission: { maxPendingPerMachine: 3, maxPendingTotal: 1000 } });
  });
  afterAll(async () => {
    await bmdb?.close();
    await tdb?.drop();
  });

  const requests = async (machineId: string) => (await bmdb.listAgentRequests({ machineId }, 100)).requests;

  it("a batch records an unknown key of an existing machine as pending, refreshes it, and records nothing for an unknown machine", async () => {
    const id = await bmdb.createMachine();
    const good = randomBytes(32);
    const other = randomBytes(32);
    await bmdb.registerAgent(id, good);
    const ghost = "00000000-0000-4000-8000-000000000001";
    const out = await bmdb.heartbeatBatch([
      { machineId: id, publicKey: good },
      { machineId: ghost, publicKey: other },
    ]);
    expect(out[0]).toEqual({ authenticated: true, installationRequest: null });
    expect(out[1]).toEqual({ authenticated: false, refusal: "unknown_machine" });
    const id2 = await bmdb.createMachine();
    const seen: string[] = [];
    const unsubscribe = await bmdb.subscribe((d) => d.kind === "event" && d.event.machineId === id2 && d.event.event === "agent_pending" && seen.push(`${d.event.event} ${String(d.event.details.keyFingerprint)}`));
    expect(await bmdb.heartbeatBatch([{ machineId: id2, publicKey: other }])).toEqual([{ authenticated: false, refusal: "pending_new" }]);
    // A watch event, announced in the batch's own statement.
    await expect.poll(() => seen).toEqual([`agent_pending ${keyFingerprint(other)}`]);
    unsubscribe();
    expect(await bmdb.heartbeatBatch([{ machineId: id2, publicKey: other }])).toEqual([{ authenticated: false, refusal: "pending" }]);
    const [r] = await requests(id2);
    expect(r).toMatchObject({ state: "pending", keyFingerprint: keyFingerprint(other), attempts: 2n, currentKeyFingerprint: null, hardwareMatch: "no_report" });
    const ghostRows = await databaseForTests(bmdb).selectFrom("machine_agent_request").selectAll().where("machine_id", "=", ghost).execute();
    expect(ghostRows).toEqual([]);
    const history = await bmdb.getHistory(id2, 10);
    expect(history.events.map((e) => e.event)).toEqual(["agent_pending", "machine_created"]);
  });

  it("bounds pending keys per machine: past the bound nothing is recorded", async () => {
    const id = await bmdb.createMachine();
    const outcomes = await bmdb.heartbeatBatch(Array.from({ length: 5 }, () => ({ machineId: id, publicKey: randomBytes(32) })));
    expect(outcomes.map((o) => (o.authenticated ? "ok" : o.refusal)).sort()).toEqual(["machine_full", "machine_full", "pending_new", "pending_new", "pending_new"]);
    expect(await requests(id)).toHaveLength(3);
  });

  it("accept makes the key the machine's, rejects the old one; reject stops recording", async () => {
    const id = await bmdb.createMachine();
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const hw = { raw: new Uint8Array([1, 2, 3]), json: { report: { serialNumber: "S1" } }, cpuThreads: 0, memoryBytes: 0n };
    await bmdb.registerAgent(id, oldKey);
    await bmdb.heartbeat({ machineId: id, publicKey: oldKey, hardwareReport: hw });
    expect(await bmdb.heartbeat({ machineId: id, publicKey: newKey, hardwareReport: { raw: new Uint8Array([9]), json: { report: { serialNumber: "S1" } }, cpuThreads: 0, memoryBytes: 0n } })).toEqual({
      authenticated: false,
      refusal: "pending_new",
    });
    const [r] = await requests(id);
    expect(r).toMatchObject({ currentKeyFingerprint: keyFingerprint(oldKey), hardwareMatch: "same_identity", hasHardwareReport: true });
    const accepted = await bmdb.acceptAgent(id, keyFingerprint(newKey).slice(0, 12), "alice");
    expect(accepted).toMatchObject({ keyFingerprint: keyFingerprint(newKey), previousKeyFingerprint: keyFingerprint(oldKey), hardwareMatch: "same_identity" });
    expect((await bmdb.heartbeat({ machineId: id, publicKey: newKey })).authenticated).toBe(true);
    expect(await bmdb.heartbeat({ machineId: id, publicKey: oldKey })).toEqual({ authenticated: false, refusal: "rejected" });
    const m = await bmdb.getMachine(id);
    expect(m.agentStarted).toMatchObject({ admission: "accepted", admittedBy: "alice" });
    expect(m.agentRequests).toMatchObject([{ state: "rejected", keyFingerprint: keyFingerprint(oldKey), reason: `replaced by ${keyFingerprint(newKey)}` }]);

    const third = randomBytes(32);
    await bmdb.heartbeatBatch([{ machineId: id, publicKey: third }]);
    await bmdb.rejectAgent(id, keyFingerprint(third), "bob", "not ours");
    const before = await databaseForTests(bmdb).selectFrom("machine_agent_request").selectAll().where("key_fingerprint", "=", keyFingerprint(third)).executeTakeFirstOrThrow();
    expect(await bmdb.heartbeatBatch([{ machineId: id, publicKey: third }])).toEqual([{ authenticated: false, refusal: "rejected" }]);
    const after = await databaseForTests(bmdb).selectFrom("machine_agent_request").selectAll().where("key_fingerprint", "=", keyFingerprint(third)).executeTakeFirstOrThrow();
    expect(after).toEqual(before);
  });

  it("admits a key by enrollment in the heartbeat's transaction, never one an operator rejected", async () => {
    const id = await bmdb.createMachine();
    const key = randomBytes(32);
    const r = await bmdb.heartbeat({ machineId: id, publicKey: key, enrollment: { ca: "CN=test CA" } });
    expect(r.authenticated).toBe(true);
    const m = await bmdb.getMachine(id);
    expect(m.agentStarted).toMatchObject({ admission: "accepted", admittedBy: "enrollment CA CN=test CA" });
    expect(m.agentHeartbeat).not.toBeNull();
    const h = await bmdb.getHistory(id, 10);
    expect(h.events.find((e) => e.event === "agent_accepted")?.details).toMatchObject({ via: "enrollment_ca", ca: "CN=test CA" });

    const bad = randomBytes(32);
    await bmdb.heartbeatBatch([{ machineId: id, publicKey: bad }]);
    await bmdb.rejectAgent(id, keyFingerprint(bad), "bob", null);
    expect(await bmdb.heartbeat({ machineId: id, publicKey: bad, enrollment: { ca: "CN=test CA" } })).toEqual({ authenticated: false, refusal: "rejected" });
  });

  it("imports idempotently and reports key conflicts", async () => {
    const k1 = randomBytes(32);
    const entries = [
      { provider: "imp", providerId: "a", publicKey: k1 },
      { provider: "imp", providerId: "b" },
    ];
    const first = await bmdb.importMachines(entries, "import");
    expect(first.map((r) => r.outcome)).toEqual(["created", "created"]);
    const second = await bmdb.importMachines([...entries, { provider: "imp", providerId: "c" }], "import");
    expect(second.map((r) => r.outcome)).toEqual(["unchanged", "unchanged", "created"]);
    expect(second[0]!.machineId).toBe(first[0]!.machineId);
    const third = await bmdb.importMachines([{ provider: "imp", providerId: "a", publicKey: randomBytes(32) }, { provider: "imp", providerId: "b", publicKey: k1 }], "import");
    expect(third.map((r) => r.outcome)).toEqual(["key_conflict", "key_set"]);
    expect((await bmdb.heartbeat({ machineId: first[0]!.machineId, publicKey: k1 })).authenticated).toBe(true);
  });
  it("forgets pending requests whose agent stopped asking, never rejected ones, and frees their places", async () => {
    const id = await bmdb.createMachine();
    const [quiet, asking, refused, extra, fourth] = [randomBytes(32), randomBytes(32), randomBytes(32), randomBytes(32), randomBytes(32)];
    await bmdb.heartbeatBatch([quiet, asking, refused].map((publicKey) => ({ machineId: id, publicKey })));
    await bmdb.rejectAgent(id, keyFingerprint(refused), "test", null);
    expect(await bmdb.heartbeatBatch([{ machineId: id, publicKey: extra }])).toEqual([{ authenticated: false, refusal: "pending_new" }]);
    // The machine is at its bound of 3 pending keys: a fourth is not recorded.
    expect(await bmdb.heartbeatBatch([{ machineId: id, publicKey: fourth }])).toEqual([{ authenticated: false, refusal: "machine_full" }]);
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await databaseForTests(bmdb)
      .updateTable("machine_agent_request")
      .set({ last_seen_at: twoHoursAgo })
      .where("machine_id", "=", id)
      .where("key_fingerprint", "in", [keyFingerprint(quiet), keyFingerprint(refused)])
      .execute();

    const expired = await bmdb.expirePending(3_600_000);
    expect(expired.filter((e) => e.machineId === id)).toEqual([{ machineId: id, keyFingerprint: keyFingerprint(quiet), lastSeenAt: twoHoursAgo }]);
    const listed = async (state: "pending" | "rejected") => (await bmdb.listAgentRequests({ machineId: id, state }, 10)).requests.map((r) => r.keyFingerprint).sort();
    expect(await listed("pending")).toEqual([keyFingerprint(asking), keyFingerprint(extra)].sort());
    expect(await listed("rejected")).toEqual([keyFingerprint(refused)]);
    const [event] = (await bmdb.getHistory(id, 1)).events;
    expect(event).toMatchObject({ event: "agent_pending_expired", details: { keyFingerprint: keyFingerprint(quiet), lastSeenAt: twoHoursAgo.toISOString(), attempts: 1 } });
    // Nothing more to expire, and the freed place takes a new key.
    expect((await bmdb.expirePending(3_600_000)).filter((e) => e.machineId === id)).toEqual([]);
    expect(await bmdb.heartbeatBatch([{ machineId: id, publicKey: fourth }])).toEqual([{ authenticated: false, refusal: "pending_new" }]);
  });
});
