import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyFingerprint } from "../lib/fingerprint.js";
import { AdmissionState, HardwareMatch, ImportOutcome } from "../gen/bmaas/operator/v1/operator_pb.js";
import { AgentCallback } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { rawEd25519PublicKey } from "../lib/certs.js";
import { createClient } from "../lib/grpc-adapter.js";
import { parseEnrollmentCas } from "../server/enrollment-ca.js";
import { testBackends } from "./helpers/databases.js";
import { createIntermediate, createTestCa, issueAgentCert, type AgentCert, type TestCa } from "./helpers/enrollment-pki.js";
import { codeOf, errorOf, newAgent, startTestServer, testClock } from "./helpers/server.js";

// Every admission path end to end: real TLS, real gRPC, real databases.

const OWN = { "grpc.use_local_subchannel_pool": 1 };
const NOT_REGISTERED = "machine unknown or public key not registered for it";

describe.each(testBackends())("admission end to end on $name", (backend) => {
  let t: Awaited<ReturnType<typeof startTestServer>>;
  let ca: TestCa;
  let intermediateRoot: TestCa;
  let foreign: TestCa;
  const clients: { close: () => void }[] = [];

  beforeAll(async () => {
    [ca, intermediateRoot, foreign] = await Promise.all([createTestCa("enrollment CA"), createTestCa("enrollment root"), createTestCa("someone else")]);
    const enrollmentCas = [...parseEnrollmentCas("ca.pem", ca.pem), ...parseEnrollmentCas("root.pem", intermediateRoot.pem)];
    // The default check counts every certificate sent (the native guard), so
    // a chain with an unrelated certificate added is refused too.
    t = await startTestServer(backend, { enrollmentCas }, { admission: { maxPendingPerMachine: 3, maxPendingTotal: 40 } });
  });
  afterAll(async () => {
    clients.forEach((c) => c.close());
    await t?.stop();
  });

  const agent = async () => {
    const a = await newAgent(t.server.publicAddress, t.pki);
    clients.push(a.client);
    return a;
  };
  const certAgent = (cert: AgentCert) => {
    const creds = grpc.credentials.createSsl(Buffer.from(t.pki.ca.cert), Buffer.from(cert.key.export({ format: "pem", type: "pkcs8" })), Buffer.from(cert.chain));
    const client = createClient(AgentCallback, t.server.publicAddress, creds, OWN);
    clients.push(client);
    return { client, publicKey: rawEd25519PublicKey(cert.key) };
  };
  const pending = async (machineId: string) => (await t.operator.listAgentRequests({ machineId, state: AdmissionState.PENDING })).requests;
  const history = async (machineId: string) => (await t.operator.getMachineHistory({ machineId })).events.map((e) => e.kind);
  const refusals = async (reason: string) => {
    const m = await t.server.metrics.registry.getSingleMetric("bmaas_agent_refusals_total")!.get();
    return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
  };

  it("pending → accept → heartbeat OK; unknown machine and pending key get one answer, and the unknown machine records nothing", async () => {
    const { machineId } = await t.operator.createMachine({ provider: "adm", providerId: "p1" });
    const a = await agent();
    const refused = await errorOf(a.client.heartbeat({ machineId }));
    const ghost = await errorOf(a.client.heartbeat({ machineId: randomUUID() }));
    expect([refused.code, refused.details]).toEqual([grpc.status.UNAUTHENTICATED, NOT_REGISTERED]);
    expect([ghost.code, ghost.details]).toEqual([refused.code, refused.details]);
    expect(await refusals("unknown_machine")).toBeGreaterThanOrEqual(1);
    const all = (await t.operator.listAgentRequests({})).requests;
    expect(all.filter((r) => r.keyFingerprint === keyFingerprint(a.publicKey)).map((r) => r.machineId)).toEqual([machineId]);

    await a.client.heartbeat({ machineId }).catch(() => {});
    const [req] = await pending(machineId);
    expect(req).toMatchObject({ keyFingerprint: keyFingerprint(a.publicKey), attempts: 2n, currentKeyFingerprint: "" });
    const accepted = await t.operator.acceptAgent({ machineId, keyFingerprint: req!.keyFingerprint.slice(0, 10) });
    expect(accepted.keyFingerprint).toBe(keyFingerprint(a.publicKey));
    expect(await codeOf(a.client.heartbeat({ machineId }))).toBe(grpc.status.OK);
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.agentStarted).toMatchObject({ admission: AdmissionState.ACCEPTED, admittedBy: "CN=operator" });
    expect(m.agentRequests).toEqual([]);
    expect(await history(machineId)).toEqual(["first_heartbeat", "agent_accepted", "agent_pending", "machine_created"]);
  });

  it("reject → stays refused and records nothing more", async () => {
    const { machineId } = await t.operator.createMachine({});
    const a = await agent();
    await a.client.heartbeat({ machineId }).catch(() => {});
    await t.operator.rejectAgent({ machineId, keyFingerprint: keyFingerprint(a.publicKey), reason: "unknown image" });
    const before = (await t.operator.listAgentRequests({ machineId, state: AdmissionState.REJECTED })).requests;
    const events = await history(machineId);
    for (let i = 0; i < 3; i++) expect((await errorOf(a.client.heartbeat({ machineId }))).details).toBe(NOT_REGISTERED);
    expect((await t.operator.listAgentRequests({ machineId, state: AdmissionState.REJECTED })).requests).toEqual(before);
    expect(before[0]).toMatchObject({ decidedBy: "CN=operator", reason: "unknown image", attempts: 1n });
    expect(await history(machineId)).toEqual(events);
    expect(events[0]).toBe("agent_rejected");
    expect(await pending(machineId)).toEqual([]);
  });

  it("a re-keyed machine shows old and new fingerprints and the hardware match; accepting refuses the old key", async () => {
    const { machineId } = await t.operator.createMachine({});
    const old = await agent();
    await t.operator.registerAgent({ machineId, publicKey: old.publicKey });
    const report = { report: { manufacturer: "ACME", serialNumber: "SN-1", cpu: [{ hardwareThreads: 8 }] } };
    await old.client.heartbeat({ machineId, hardwareReport: report });
    const reinstalled = await agent();
    await reinstalled.client.heartbeat({ machineId, hardwareReport: { ...report, warning: ["new kernel"] } }).catch(() => {});
    const [req] = await pending(machineId);
    expect(req).toMatchObject({ currentKeyFingerprint: keyFingerprint(old.publicKey), hardwareMatch: HardwareMatch.SAME_IDENTITY });
    const rekeyed = (await t.operator.listAgentRequests({ rekeyed: true })).requests.map((r) => r.machineId);
    expect(rekeyed).toContain(machineId);
    const r = await t.operator.acceptAgent({ machineId, keyFingerprint: req!.keyFingerprint });
    expect(r).toMatchObject({ previousKeyFingerprint: keyFingerprint(old.publicKey), hardwareMatch: HardwareMatch.SAME_IDENTITY });
    expect(await codeOf(reinstalled.client.heartbeat({ machineId }))).toBe(grpc.status.OK);
    expect(await codeOf(old.client.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await pending(machineId)).toEqual([]);
  });

  it("a certificate signed by an enrollment CA is admitted on its first heartbeat, also through an intermediate", async () => {
    for (const [name, cert] of [
      ["direct", (id: string) => issueAgentCert(ca, id)],
      ["intermediate", async (id: string) => {
        const intermediate = await createIntermediate("enrollment intermediate", intermediateRoot);
        return issueAgentCert(intermediate, id, { intermediates: [intermediate] });
      }],
    ] as const) {
      const { machineId } = await t.operator.createMachine({ provider: "ca", providerId: name });
      const a = certAgent(await cert(machineId));
      expect(await codeOf(a.client.heartbeat({ machineId })), name).toBe(grpc.status.OK);
      expect(await codeOf(a.client.heartbeat({ machineId })), name).toBe(grpc.status.OK);
      const m = (await t.operator.getMachine({ machineId })).machine!;
      expect(m.agentStarted?.keyFingerprint).toBe(keyFingerprint(a.publicKey));
      expect(m.agentStarted?.admittedBy).toMatch(name === "direct" ? /^enrollment CA CN=enrollment CA / : /^enrollment CA CN=enrollment root /);
      const accepted = (await t.operator.getMachineHistory({ machineId })).events.find((e) => e.kind === "agent_accepted")!;
      expect(JSON.parse(accepted.detailsJson)).toMatchObject({ via: "enrollment_ca" });
    }
  });

  it("expired, foreign-CA and wrong-machine certificates are not admitted (treated as self-signed ones)", async () => {
    const { machineId } = await t.operator.createMachine({});
    const other = (await t.operator.createMachine({})).machineId;
    const cases = [
      await issueAgentCert(ca, machineId, { notBefore: new Date(Date.now() - 3 * 86400_000), notAfter: new Date(Date.now() - 86400_000) }),
      await issueAgentCert(foreign, machineId),
      await issueAgentCert(ca, other),
    ];
    for (const c of cases) {
      const a = certAgent(c);
      const e = await errorOf(a.client.heartbeat({ machineId }));
      expect([e.code, e.details]).toEqual([grpc.status.UNAUTHENTICATED, NOT_REGISTERED]);
    }
    expect((await t.operator.getMachine({ machineId })).machine!.agentStarted).toBeUndefined();
    // Like self-signed ones, they ask: pending requests, within the machine's bound.
    expect((await pending(machineId)).length).toBe(3);
    // A foreign chain with an intermediate is more than one certificate: refused at the connection.
    const inter = await createIntermediate("foreign intermediate", foreign);
    const chained = certAgent(await issueAgentCert(inter, machineId, { intermediates: [inter] }));
    expect(await codeOf(chained.client.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
    // A good enrollment chain with an unrelated certificate added: more than
    // the chain, refused in the TLS handshake (the client sees no server).
    const good = await createIntermediate("enrollment intermediate", intermediateRoot);
    const padded = await issueAgentCert(good, machineId, { intermediates: [good] });
    const stuffed = certAgent({ key: padded.key, chain: padded.chain + foreign.pem });
    expect(await codeOf(stuffed.client.heartbeat({ machineId }))).toBe(grpc.status.UNAVAILABLE);
    expect((await t.operator.getMachine({ machineId })).machine!.agentStarted).toBeUndefined();
  });

  it("bounds pending requests under a flood of random keys, per machine and in total", async () => {
    const machines = await Promise.all(Array.from({ length: 20 }, () => t.operator.createMachine({}).then((r) => r.machineId)));
    const flood = await Promise.all(Array.from({ length: 60 }, () => agent()));
    await Promise.all(flood.map((a, i) => a.client.heartbeat({ machineId: machines[i % machines.length]! }).catch(() => {})));
    await Promise.all(flood.map((a, i) => a.client.heartbeat({ machineId: machines[(i + 7) % machines.length]! }).catch(() => {})));
    const counts = await Promise.all(machines.map(async (m) => (await pending(m)).length));
    expect(Math.max(...counts)).toBeLessThanOrEqual(3);
    const total = (await t.operator.fleetStats({})).agentsPending;
    // The total bound is checked at READ COMMITTED: concurrent batches may overshoot it by their own rows.
    expect(Number(total)).toBeGreaterThanOrEqual(30);
    expect(Number(total)).toBeLessThanOrEqual(40 + 60);
    expect((await refusals("machine_full")) + (await refusals("total_full"))).toBeGreaterThan(0);
    const again = await refusals("total_full");
    await flood[0]!.client.heartbeat({ machineId: machines[3]! }).catch(() => {});
    expect(await refusals("total_full")).toBeGreaterThanOrEqual(again);
  });

  it("imports machines idempotently; a bad entry writes nothing", async () => {
    const k = await agent();
    const entries = [
      { provider: "bulk", providerId: "m1", publicKey: k.publicKey },
      { provider: "bulk", providerId: "m2" },
    ];
    const bad = await errorOf(t.operator.importMachines({ entries: [...entries, { provider: "bulk", providerId: "m3", publicKey: new Uint8Array(32) }] }));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/^entry 3: public_key is not a valid Ed25519 public key/);
    expect((await t.operator.listMachines({ provider: "bulk" })).machines).toEqual([]);
    const first = await t.operator.importMachines({ entries });
    expect(first.results.map((r) => r.outcome)).toEqual([ImportOutcome.CREATED, ImportOutcome.CREATED]);
    const second = await t.operator.importMachines({ entries });
    expect(second.results.map((r) => r.outcome)).toEqual([ImportOutcome.UNCHANGED, ImportOutcome.UNCHANGED]);
    expect(second.results.map((r) => r.machineId)).toEqual(first.results.map((r) => r.machineId));
    expect(await codeOf(k.client.heartbeat({ machineId: first.results[0]!.machineId }))).toBe(grpc.status.OK);
    const m = (await t.operator.getMachine({ machineId: first.results[0]!.machineId })).machine!;
    expect(m.agentStarted).toMatchObject({ admission: AdmissionState.PREAUTHORIZED, admittedBy: "import by CN=operator" });
  });
});

describe.each(testBackends())("pending requests expire on $name", (backend) => {
  it("the server forgets a request whose agent stopped asking, and says so in the machine's history", async () => {
    const clock = testClock(new Date());
    const t = await startTestServer(backend, { admissionPendingExpiryMs: 60_000 }, { clock: clock.now });
    const a = await newAgent(t.server.publicAddress, t.pki);
    try {
      const { machineId } = await t.operator.createMachine({});
      const pending = async () => (await t.operator.listAgentRequests({ machineId, state: AdmissionState.PENDING })).requests.map((r) => r.keyFingerprint);
      expect((await errorOf(a.client.heartbeat({ machineId }))).code).toBe(grpc.status.UNAUTHENTICATED);
      expect(await pending()).toEqual([keyFingerprint(a.publicKey)]);
      // The job looks every second (a hundredth of the age); within the age the request stays.
      await new Promise((r) => setTimeout(r, 1500));
      expect(await pending()).toEqual([keyFingerprint(a.publicKey)]);

      clock.advance(61_000);
      await expect.poll(pending, { timeout: 10_000, interval: 200 }).toEqual([]);
      const [latest] = (await t.operator.getMachineHistory({ machineId })).events;
      expect(latest?.kind).toBe("agent_pending_expired");
      expect(JSON.parse(latest!.detailsJson)).toMatchObject({ keyFingerprint: keyFingerprint(a.publicKey), attempts: 1 });
      const expired = await t.server.metrics.registry.getSingleMetric("bmaas_admission_pending_expired_total")!.get();
      expect(expired.values[0]?.value).toBe(1);
    } finally {
      a.client.close();
      await t.stop();
    }
  });
});
