import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_EVENTS_PER_WINDOW } from "./bmdb.js";
import { openBmdb, type Bmdb, type MachineEvent } from "./index.js";
import { testBackends, type TestDatabase } from "../test/helpers/databases.js";

// The group-commit statement: authentication, upsert, history transitions and
// pending requests for a whole batch, on both backends.
describe.each(testBackends())("heartbeat batches on $name", (backend) => {
  let tdb: TestDatabase;
  let bmdb: Bmdb;
  let clock = new Date("2026-01-01T00:00:00Z");

  beforeAll(async () => {
    tdb = await backend.create();
    bmdb = await openBmdb(tdb.url, { clock: () => clock });
  });
  afterAll(async () => {
    await bmdb?.close();
    await tdb?.drop();
  });

  async function agent() {
    const machineId = await bmdb.createMachine();
    const publicKey = randomBytes(32);
    await bmdb.registerAgent(machineId, publicKey);
    return { machineId, publicKey };
  }

  it("answers each row in input order: registered pairs only, nothing written for the rest", async () => {
    const a = await agent();
    const b = await agent();
    const unknown = { machineId: "00000000-0000-4000-8000-000000000001", publicKey: randomBytes(32) };
    const wrongKey = { machineId: b.machineId, publicKey: randomBytes(32) };
    const out = await bmdb.heartbeatBatch([unknown, a, wrongKey]);
    // An unknown machine records nothing; a wrong key of an existing machine asks to be admitted (bmdb/admission.ts).
    expect(out).toEqual([
      { authenticated: false, refusal: "unknown_machine" },
      { authenticated: true, installationRequest: null },
      { authenticated: false, refusal: "pending_new" },
    ]);
    expect((await bmdb.getMachine(a.machineId)).agentHeartbeat?.lastHeartbeatAt).toEqual(clock);
    expect((await bmdb.getMachine(b.machineId)).agentHeartbeat).toBeNull();
  });

  it("records first_heartbeat once and heartbeat_resumed after the machine went stale, with a NOTIFY for each", async () => {
    const a = await agent();
    const seen: MachineEvent[] = [];
    const unsubscribe = await bmdb.subscribe((d) => d.kind === "event" && d.event.machineId === a.machineId && d.event.event.includes("heartbeat") && seen.push(d.event));
    clock = new Date(clock.getTime() + 1000);
    await bmdb.heartbeatBatch([a]);
    clock = new Date(clock.getTime() + 1000);
    await bmdb.heartbeatBatch([a]);
    clock = new Date(clock.getTime() + bmdb.thresholds.heartbeatFreshMs + 5000);
    await bmdb.heartbeatBatch([a]);
    const history = await bmdb.getHistory(a.machineId, 10);
    const kinds = history.events.map((e) => e.event);
    expect(kinds.filter((k) => k === "first_heartbeat")).toHaveLength(1);
    expect(kinds.filter((k) => k === "heartbeat_resumed")).toHaveLength(1);
    const resumed = history.events.find((e) => e.event === "heartbeat_resumed")!;
    expect(resumed.details).toEqual({ silentForMs: bmdb.thresholds.heartbeatFreshMs + 5000 });
    await expect.poll(() => seen.map((e) => e.event)).toEqual(["first_heartbeat", "heartbeat_resumed"]);
    expect(seen[1]!.eventId).toBe(resumed.eventId);
    expect(seen[1]!.occurredAt.getTime()).toBe(clock.getTime());
    unsubscribe();
  });

  it("returns the pending installation request until a report for its generation exists", async () => {
    const a = await agent();
    await bmdb.setInstallationRequest(a.machineId, 3n, Uint8Array.of(8, 3));
    const [first] = await bmdb.heartbeatBatch([a]);
    expect(first?.authenticated && [...(first.installationRequest ?? [])]).toEqual([8, 3]);
    await bmdb.heartbeat({ ...a, installationReport: { generation: 3n, result: "success", raw: Uint8Array.of(8, 3, 18, 0) } });
    expect(await bmdb.heartbeatBatch([a])).toEqual([{ authenticated: true, installationRequest: null }]);
  });

  it("does not resurrect a revoked agent's heartbeat", async () => {
    const a = await agent();
    await bmdb.heartbeatBatch([a]);
    await bmdb.revokeAgent(a.machineId);
    // The revoked key is refused for good (rejected), so it asks no more.
    expect(await bmdb.heartbeatBatch([a])).toEqual([{ authenticated: false, refusal: "rejected" }]);
    expect((await bmdb.getMachine(a.machineId)).agentHeartbeat).toBeNull();
  });

  it("bounds history an agent causes: rate per machine and kind, and size of agent text", async () => {
    const a = await agent();
    for (let i = 0; i < AGENT_EVENTS_PER_WINDOW + 5; i++) {
      clock = new Date(clock.getTime() + 1000);
      // Alternating reports: every one is a change.
      await bmdb.heartbeat({ ...a, hardwareReport: { raw: Uint8Array.of(10, 1, i % 2 ? 65 : 66), json: {}, cpuThreads: 0, memoryBytes: 0n } });
    }
    await bmdb.heartbeat({ ...a, installationReport: { generation: 1n, result: "error", errorMessage: "e".repeat(8000), raw: Uint8Array.of(8, 1) } });
    const events = (await bmdb.getHistory(a.machineId, 100)).events;
    expect(events.filter((e) => e.event === "hardware_report_changed")).toHaveLength(AGENT_EVENTS_PER_WINDOW);
    const reported = events.find((e) => e.event === "installation_reported")!;
    expect(String(reported.details.error).length).toBeLessThanOrEqual(1001);
    // The machine itself keeps the whole message and the latest report.
    expect((await bmdb.getMachine(a.machineId)).installationReport?.errorMessage).toHaveLength(8000);
  });

  it("handles a batch of a thousand machines in one call", async () => {
    const agents = [];
    for (let i = 0; i < 50; i++) agents.push(await agent());
    const strangers = Array.from({ length: 950 }, () => ({ machineId: crypto.randomUUID(), publicKey: randomBytes(32) }));
    const out = await bmdb.heartbeatBatch([...strangers, ...agents]);
    expect(out.slice(0, 950).every((o) => !o.authenticated)).toBe(true);
    expect(out.slice(950).every((o) => o.authenticated)).toBe(true);
  });
});
