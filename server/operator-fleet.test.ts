import * as grpc from "@grpc/grpc-js";
import type { MessageShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBmdb } from "../bmdb/index.js";
import { HeartbeatState, type WatchMachinesResponseSchema } from "../gen/bmaas/operator/v1/operator_pb.js";
import { testBackends } from "../test/helpers/databases.js";
import { codeOf, errorOf, newAgent, operatorClient, startServerOn, startTestServer, testClock, type TestAgent } from "../test/helpers/server.js";

const MIN = 60_000;
type WatchItem = MessageShape<typeof WatchMachinesResponseSchema>;

describe.each(testBackends())("fleet views on $name", (backend) => {
  const clock = testClock();
  let t: Awaited<ReturnType<typeof startTestServer>>;

  beforeAll(async () => {
    t = await startTestServer(backend, {}, { clock: clock.now });
  });
  afterAll(async () => t?.stop());

  async function machineWithAgent(provider?: string): Promise<{ machineId: string; agent: TestAgent }> {
    const { machineId } = await t.operator.createMachine(provider ? { provider, providerId: `${provider}-${Math.random()}` } : {});
    const agent = await newAgent(t.server.publicAddress, t.pki);
    await t.operator.registerAgent({ machineId, publicKey: agent.publicKey });
    return { machineId, agent };
  }

  async function events(machineId: string): Promise<string[]> {
    const h = await t.operator.getMachineHistory({ machineId, pageSize: 1000 });
    return h.events.map((e) => e.kind).reverse();
  }

  it("pages through every machine exactly once while machines are being added", async () => {
    const provider = "paging";
    const before = new Set<string>();
    for (let i = 0; i < 120; i++) before.add((await t.operator.createMachine({ provider, providerId: `p${i}` })).machineId);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    let extra = 0;
    do {
      const page = await t.operator.listMachines({ provider, pageSize: 25, pageToken: token });
      seen.push(...page.machines.map((m) => m.machineId));
      token = page.nextPageToken;
      pages++;
      // Concurrent inserts between pages land before and after the cursor.
      await Promise.all([0, 1].map(() => t.operator.createMachine({ provider, providerId: `extra${extra++}` })));
    } while (token);
    expect(pages).toBeGreaterThan(4);
    expect(new Set(seen).size).toBe(seen.length); // nothing repeated
    for (const id of before) expect(seen).toContain(id); // nothing lost
    expect([...seen].sort()).toEqual(seen); // stable order
  });

  it("searches by machine ID, provider ID or key fingerprint prefix, and refuses an overlong search", async () => {
    const { machineId } = await machineWithAgent("searchable");
    const fp = (await t.operator.getMachine({ machineId })).machine!.agentStarted!.keyFingerprint;
    const ids = async (search: string) => (await t.operator.listMachines({ search, pageSize: 1000 })).machines.map((m) => m.machineId);
    expect(await ids(machineId.slice(0, 18))).toContain(machineId);
    expect(await ids("searchable-")).toEqual([machineId]);
    expect(await ids(fp.slice(0, 10))).toEqual([machineId]);
    expect(await ids("no-such-provider-id")).toEqual([]);
    expect(await codeOf(t.operator.listMachines({ search: "x".repeat(257) }))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("refuses a malformed page token", async () => {
    expect(await codeOf(t.operator.listMachines({ pageToken: "garbage!" }))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("derives heartbeat state and recovery from a controllable clock, and filters by them", async () => {
    const provider = "states";
    const fresh = await machineWithAgent(provider);
    const stale = await machineWithAgent(provider);
    const silent = await machineWithAgent(provider); // started, never heartbeat
    const { machineId: bare } = await t.operator.createMachine({ provider, providerId: "bare" });
    await stale.agent.client.heartbeat({ machineId: stale.machineId, hardwareReport: { report: { manufacturer: "x" } } });
    clock.advance(31 * MIN);
    await fresh.agent.client.heartbeat({ machineId: fresh.machineId });

    const ids = async (filter: Parameters<typeof t.operator.listMachines>[0]) =>
      (await t.operator.listMachines({ provider, ...filter })).machines.map((m) => m.machineId).sort();
    expect(await ids({ heartbeatState: HeartbeatState.FRESH })).toEqual([fresh.machineId]);
    expect(await ids({ heartbeatState: HeartbeatState.STALE })).toEqual([stale.machineId]);
    expect(await ids({ heartbeatState: HeartbeatState.NEVER })).toEqual([silent.machineId, bare].sort());
    expect(await ids({ needsRecovery: true })).toEqual([stale.machineId, silent.machineId].sort());
    expect(await ids({ needsRecovery: false })).toEqual([fresh.machineId, bare].sort());
    expect(await ids({ hasHardwareReport: true })).toEqual([stale.machineId]);

    await t.operator.setInstallationRequest({ machineId: fresh.machineId, generation: 1n, rootDevice: "/dev/sda" });
    expect(await ids({ pendingInstallation: true })).toEqual([fresh.machineId]);
    const summary = (await t.operator.listMachines({ provider, pendingInstallation: true })).machines[0]!;
    expect(summary).toMatchObject({ heartbeatState: HeartbeatState.FRESH, needsRecovery: false, installationPending: true, provider });
    [fresh, stale, silent].forEach((m) => m.agent.client.close());
  });

  it("records going stale once (by the sweeper) and coming back, but not ordinary heartbeats", async () => {
    const { machineId, agent } = await machineWithAgent();
    await agent.client.heartbeat({ machineId });
    clock.advance(MIN);
    await agent.client.heartbeat({ machineId });
    await agent.client.heartbeat({ machineId });
    expect(await events(machineId)).toEqual(["machine_created", "agent_registered", "first_heartbeat"]);

    clock.advance(11 * MIN);
    expect(await t.bmdb.sweepStale()).toContain(machineId);
    expect(await t.bmdb.sweepStale()).not.toContain(machineId);
    await agent.client.heartbeat({ machineId });
    expect(await events(machineId)).toEqual(["machine_created", "agent_registered", "first_heartbeat", "heartbeat_stale", "heartbeat_resumed"]);
    agent.client.close();
  });

  it("records hardware report changes, not identical re-sends, and pages history newest first", async () => {
    const { machineId, agent } = await machineWithAgent();
    const report = { report: { manufacturer: "ACME" } };
    await agent.client.heartbeat({ machineId, hardwareReport: report });
    await agent.client.heartbeat({ machineId, hardwareReport: report });
    await agent.client.heartbeat({ machineId, hardwareReport: { report: { manufacturer: "ACME", product: "v2" } } });
    expect((await events(machineId)).filter((e) => e === "hardware_report_changed")).toHaveLength(2);

    const all: string[] = [];
    let token = "";
    do {
      const page = await t.operator.getMachineHistory({ machineId, pageSize: 2, pageToken: token });
      all.push(...page.events.map((e) => e.kind));
      token = page.nextPageToken;
    } while (token);
    expect(all).toEqual(["hardware_report_changed", "hardware_report_changed", "first_heartbeat", "agent_registered", "machine_created"]);
    agent.client.close();
  });

  it("revokes an agent: it is refused from then on", async () => {
    const { machineId, agent } = await machineWithAgent();
    await agent.client.heartbeat({ machineId });
    const r = await t.operator.revokeAgent({ machineId });
    expect(r.keyFingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(await codeOf(agent.client.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.agentStarted).toBeUndefined();
    expect(m.agentHeartbeat).toBeUndefined();
    expect(await codeOf(t.operator.revokeAgent({ machineId }))).toBe(grpc.status.FAILED_PRECONDITION);
    expect((await events(machineId)).at(-1)).toBe("agent_revoked");
    agent.client.close();
  });

  it("deletes a machine but keeps its history", async () => {
    const { machineId, agent } = await machineWithAgent();
    await t.operator.deleteMachine({ machineId });
    expect(await codeOf(t.operator.getMachine({ machineId }))).toBe(grpc.status.NOT_FOUND);
    expect(await codeOf(t.operator.deleteMachine({ machineId }))).toBe(grpc.status.NOT_FOUND);
    expect(await codeOf(agent.client.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await events(machineId)).toEqual(["machine_created", "agent_registered", "machine_deleted"]);
    expect(await codeOf(t.operator.getMachineHistory({ machineId: "0b6f1d3e-0000-4000-8000-000000000000" }))).toBe(grpc.status.NOT_FOUND);
    agent.client.close();
  });

  it("updates provider status, address and location", async () => {
    const { machineId } = await t.operator.createMachine({ provider: "equinix", providerId: "upd-1" });
    await t.operator.updateProvider({ machineId, status: "active", location: "fra2" });
    await t.operator.updateProvider({ machineId, address: "203.0.113.7" });
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.provided).toMatchObject({ status: "active", location: "fra2", address: "203.0.113.7" });
    const { machineId: bare } = await t.operator.createMachine({});
    expect(await codeOf(t.operator.updateProvider({ machineId: bare, status: "x" }))).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it("streams the event a heartbeat causes to a watcher of that machine", async () => {
    const { machineId, agent } = await machineWithAgent();
    const { machineId: other } = await t.operator.createMachine({});
    const got = collect(t.operator.watchMachines({ machineId }));
    await got.ready;
    await t.operator.registerAgent({ machineId: other, publicKey: (await newAgent(t.server.publicAddress, t.pki)).publicKey });
    await agent.client.heartbeat({ machineId });
    const item = await got.next();
    expect(item.item.case).toBe("event");
    expect(item.item.value).toMatchObject({ machineId, kind: "first_heartbeat" });
    got.cancel();
    agent.client.close();
  });
});

/** Reads a watch stream: ready when the server has subscribed, next() per item. */
function collect(stream: grpc.ClientReadableStream<WatchItem>) {
  const items: WatchItem[] = [];
  const waiting: ((i: WatchItem) => void)[] = [];
  let failure: grpc.ServiceError | undefined;
  const failed: ((e: grpc.ServiceError) => void)[] = [];
  stream.on("data", (i: WatchItem) => {
    const w = waiting.shift();
    if (w) w(i);
    else items.push(i);
  });
  stream.on("error", (e: grpc.ServiceError) => {
    failure = e;
    failed.forEach((f) => f(e));
  });
  return {
    stream,
    ready: new Promise<void>((r) => stream.once("metadata", () => r())),
    next: () => new Promise<WatchItem>((r) => (items.length ? r(items.shift()!) : waiting.push(r))),
    error: () => new Promise<grpc.ServiceError>((r) => (failure ? r(failure) : failed.push(r))),
    cancel: () => stream.cancel(),
  };
}

describe("FleetStats on a fresh database", () => {
  it("counts the fleet and sums hardware by provider and location", async () => {
    const [backend] = testBackends();
    const clock = testClock();
    const t = await startTestServer(backend!, {}, { clock: clock.now });
    try {
      const op = t.operator;
      const a = (await op.createMachine({ provider: "equinix", providerId: "a" })).machineId;
      const b = (await op.createMachine({ provider: "equinix", providerId: "b" })).machineId;
      await op.createMachine({ provider: "ovh", providerId: "c" }); // provided, agent never started
      await op.createMachine({}); // not provided
      await op.updateProvider({ machineId: a, location: "fra" });
      await op.updateProvider({ machineId: b, location: "fra" });
      const agents = await Promise.all([a, b].map(async (machineId) => {
        const agent = await newAgent(t.server.publicAddress, t.pki);
        await op.registerAgent({ machineId, publicKey: agent.publicKey });
        return { machineId, agent };
      }));
      const report = (threads: number, gib: bigint) => ({ report: { cpu: [{ hardwareThreads: threads, cores: threads / 2 }], memoryInstalledBytes: gib * 1024n ** 3n } });
      await agents[0]!.agent.client.heartbeat({ machineId: a, hardwareReport: report(32, 256n) });
      await agents[1]!.agent.client.heartbeat({ machineId: b, hardwareReport: report(16, 64n) });
      await op.setInstallationRequest({ machineId: a, generation: 1n, rootDevice: "/dev/sda" });
      await op.setInstallationRequest({ machineId: b, generation: 1n, rootDevice: "/dev/sda" });
      await agents[1]!.agent.client.heartbeat({ machineId: b, installationReport: { generation: 1n, result: { case: "success", value: {} } } });
      clock.advance(11 * MIN);
      await agents[0]!.agent.client.heartbeat({ machineId: a });

      const s = await op.fleetStats({});
      expect(s).toMatchObject({
        machines: 4n,
        provided: 3n,
        heartbeating: 1n,
        pendingInstallation: 1n,
        installed: 1n,
        pendingAgentStart: 1n,
        pendingRecovery: 1n,
      });
      expect(s.hardware).toEqual([
        expect.objectContaining({ provider: "equinix", location: "fra", nodes: 2n, cpuThreads: 48n, memoryBytes: 320n * 1024n ** 3n }),
      ]);
      agents.forEach(({ agent }) => agent.client.close());
    } finally {
      await t.stop();
    }
  });
});

describe("WatchMachines limits", () => {
  it("drops a watcher that stops reading, with RESOURCE_EXHAUSTED, without holding up the writes meanwhile", async () => {
    const [backend] = testBackends();
    const t = await startTestServer(backend!, { watchMaxQueued: 50 });
    try {
      const w = collect(t.operator.watchMachines({}));
      await w.ready;
      w.stream.pause(); // a stalled dashboard
      // Every write finishes while the watcher is still paused: a writer that
      // waited for it would never get past this loop (the test times out).
      for (let i = 0; i < 3000; i++) await t.bmdb.createMachine();
      w.stream.resume();
      const err = await w.error();
      expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(err.details).toMatch(/fell more than 50 events behind/);
    } finally {
      await t.stop();
    }
  });
});

// A watcher on one server sees what another server on the same database did.
describe.runIf(process.env.TEST_DATABASE_URL)("WatchMachines across servers on PostgreSQL", () => {
  it("delivers a heartbeat's event made through another server", async () => {
    const pg = testBackends().find((b) => b.name === "postgres")!;
    const one = await startTestServer(pg);
    const bmdb2 = await openBmdb(one.db.url);
    const two = await startServerOn(bmdb2, one.pki);
    const op2 = operatorClient(two.internalAddress, one.pki);
    try {
      const { machineId } = await one.operator.createMachine({});
      const agent = await newAgent(one.server.publicAddress, one.pki);
      await one.operator.registerAgent({ machineId, publicKey: agent.publicKey });
      const w = collect(op2.watchMachines({ machineId }));
      await w.ready;
      await agent.client.heartbeat({ machineId });
      let item = await w.next();
      // The registration's own event, made on server one just before, may
      // reach server two (NOTIFY) after its watch opened: it comes first then.
      if (item.item.case === "event" && item.item.value.kind === "agent_registered") item = await w.next();
      expect(item.item.value).toMatchObject({ machineId, kind: "first_heartbeat" });
      w.cancel();
      agent.client.close();
      const err = await errorOf(op2.getMachine({ machineId: "x" }));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      op2.close();
      await two.stop();
      await bmdb2.close();
      await one.stop();
    }
  });
});

describe.each(testBackends())("the stale sweep after a restart on $name", (backend) => {
  it("waits one freshness window before its first sweep, then records the silent machine", async () => {
    // A machine whose last heartbeat is an hour old when a server starts (it
    // was down): it may be alive and reconnecting, so it is not swept until a
    // whole freshness window has passed with the server listening.
    const freshMs = 4000;
    const clock = testClock();
    const thresholds = { heartbeatFreshMs: freshMs, recoveryAfterMs: 30 * MIN };
    const t = await startTestServer(backend, { staleSweepIntervalMs: 0 }, { clock: clock.now, thresholds });
    let restarted: Awaited<ReturnType<typeof startServerOn>> | undefined;
    try {
      const { machineId } = await t.operator.createMachine({});
      const agent = await newAgent(t.server.publicAddress, t.pki);
      await t.operator.registerAgent({ machineId, publicKey: agent.publicKey });
      await agent.client.heartbeat({ machineId });
      agent.client.close();
      clock.advance(60 * MIN);

      const started = Date.now();
      restarted = await startServerOn(t.bmdb, t.pki, { staleSweepIntervalMs: 100 });
      const kinds = async () => (await t.bmdb.getHistory(machineId, 100)).events.map((e) => e.event);
      await new Promise((r) => setTimeout(r, 300));
      const early = await kinds();
      // Guard: that reading fell inside the window (a very slow machine could not test this).
      expect(Date.now() - started).toBeLessThan(freshMs - 500);
      expect(early).toContain("first_heartbeat");
      expect(early).not.toContain("heartbeat_stale");
      let late = early;
      while (!late.includes("heartbeat_stale") && Date.now() - started < freshMs + 10_000) {
        await new Promise((r) => setTimeout(r, 100));
        late = await kinds();
      }
      expect(late).toContain("heartbeat_stale");
      expect(Date.now() - started).toBeGreaterThanOrEqual(freshMs);
    } finally {
      await restarted?.stop();
      await t.stop();
    }
  });
});
