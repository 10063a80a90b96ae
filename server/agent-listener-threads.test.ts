import { create, toBinary } from "@bufbuild/protobuf";
import { connect as netConnect, createServer, type AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HeartbeatRequestSchema } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { createAgentCertificate, generateAgentKey, rawEd25519PublicKey } from "../lib/certs.js";
import { testBackends } from "../test/helpers/databases.js";
import { createTestCa, issueAgentCert } from "../test/helpers/enrollment-pki.js";
import { frame, rawCall, rawSession, splitAddress } from "../test/helpers/raw-grpc.js";
import { openBmdb, type Bmdb } from "../bmdb/index.js";
import { startServerOn, startTestServer, testPki } from "../test/helpers/server.js";
import { acceptQueues, deepestAcceptQueue } from "../test/helpers/accept-queues.js";
import { defaultAgentThreads } from "./agent-listener-threads.js";
import { parseEnrollmentCas } from "./enrollment-ca.js";

// The agent listener on two threads sharing one port: whichever thread the
// kernel gives a connection to, the call is decided once, by the main
// thread, with that connection's own identity, and the answer reaches that
// connection. Sixteen connections from distinct source ports land on both
// threads but with a chance of 2^-15.

const UNAUTHENTICATED = 16;
const RESOURCE_EXHAUSTED = 8;
const CONNECTIONS = 16;

const heartbeat = (machineId: string) => frame(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { machineId })));

async function agentTls() {
  const key = generateAgentKey();
  const cert = await createAgentCertificate(key);
  return { publicKey: rawEd25519PublicKey(key), tls: { cert: cert.cert, key: cert.key } };
}

describe("agent listener on two threads", () => {
  let t: Awaited<ReturnType<typeof startTestServer>>;
  const ca = createTestCa("enrollment");

  beforeAll(async () => {
    t = await startTestServer(testBackends()[0]!, { agentThreads: 2, enrollmentCas: parseEnrollmentCas("ca.pem", (await ca).pem) });
  });
  afterAll(async () => t?.stop());

  /** Opens every session first (so all are connected at once), runs calls on each, and reads each thread's authenticated connections meanwhile. */
  async function onSessions<T>(tls: ({ cert: string; key: string } | Record<string, never>)[], run: (s: Awaited<ReturnType<typeof rawSession>>, i: number) => Promise<T>) {
    const sessions = await Promise.all(tls.map((o) => rawSession(t.server.publicAddress, o)));
    try {
      const results = await Promise.all(sessions.map(run));
      // Every session has been answered, so the server has seen every handshake end.
      return { results, byThread: t.server.agentConnectionsByThread.map((c) => c.authenticated) };
    } finally {
      sessions.forEach((s) => s.destroy());
    }
  }

  it("serves registered agents on both threads, each with its own connection's identity", async () => {
    const agents = await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        const { machineId } = await t.operator.createMachine({});
        const a = await agentTls();
        await t.operator.registerAgent({ machineId, publicKey: a.publicKey });
        return { machineId, ...a };
      }),
    );
    // Each agent heartbeats for itself, then claims the next agent's machine.
    const { results, byThread } = await onSessions(
      agents.map((a) => a.tls),
      async (s, i) => [(await rawCall(s, heartbeat(agents[i]!.machineId))).code, (await rawCall(s, heartbeat(agents[(i + 1) % CONNECTIONS]!.machineId))).code],
    );
    expect(t.server.agentConnectionsByThread).toHaveLength(2);
    expect(byThread.every((n) => n > 0)).toBe(true);
    expect(byThread.reduce((a, b) => a + b, 0)).toBe(CONNECTIONS);
    expect(results).toEqual(agents.map(() => [0, UNAUTHENTICATED]));
    for (const a of agents) {
      const m = await t.operator.getMachine({ machineId: a.machineId });
      expect(m.machine?.agentHeartbeat?.lastHeartbeatAt).toBeDefined();
    }
  });

  it("refuses, on both threads: no certificate (UNAUTHENTICATED from its headers), an oversized request from its length prefix", async () => {
    const noCert = await onSessions(
      Array.from({ length: CONNECTIONS }, () => ({})),
      async (s) => (await rawCall(s, heartbeat(crypto.randomUUID()))).code,
    );
    expect(noCert.results).toEqual(noCert.results.map(() => UNAUTHENTICATED));
    const agents = await Promise.all(Array.from({ length: CONNECTIONS }, agentTls));
    const big = await onSessions(
      agents.map((a) => a.tls),
      async (s) => (await rawCall(s, frame(Buffer.alloc(64), 64 * 1024 * 1024))).code,
    );
    expect(big.byThread.every((n) => n > 0)).toBe(true);
    expect(big.results).toEqual(agents.map(() => RESOURCE_EXHAUSTED));
  });

  it("admits keys by an enrollment CA's certificate on both threads, and the next heartbeat on the connection is a plain one", async () => {
    const machines = await Promise.all(Array.from({ length: CONNECTIONS }, async () => (await t.operator.createMachine({})).machineId));
    const certs = await Promise.all(
      machines.map(async (machineId) => {
        const key = generateAgentKey();
        const issued = await issueAgentCert(await ca, machineId, { key });
        return { cert: issued.chain, key: key.export({ format: "pem", type: "pkcs8" }).toString() };
      }),
    );
    const single = t.server.heartbeats.counters.single;
    const { results, byThread } = await onSessions(certs, async (s, i) => [
      (await rawCall(s, heartbeat(machines[i]!))).code,
      (await rawCall(s, heartbeat(machines[i]!))).code,
    ]);
    expect(byThread.every((n) => n > 0)).toBe(true);
    expect(results).toEqual(machines.map(() => [0, 0]));
    // One enrollment per connection: the admission reached the connection's
    // own thread, and its second heartbeat took the group-commit path.
    expect(t.server.heartbeats.counters.single - single).toBe(CONNECTIONS);
    const agents = await Promise.all(machines.map((machineId) => t.operator.getMachine({ machineId })));
    expect(agents.every((m) => m.machine?.agentHeartbeat?.lastHeartbeatAt !== undefined)).toBe(true);
  });

  it("leaves the port to nobody else: a second server on it fails to start, with threads or without", async () => {
    const address = t.server.publicAddress;
    for (const agentThreads of [2, 1]) {
      await expect(startServerOn(t.bmdb, t.pki, { publicListenAddress: address, agentThreads })).rejects.toThrow(/address already in use/);
    }
  });
});

describe("agent listener threads: callers who leave", () => {
  it("drops, before the database, the heartbeats of callers that left, whichever thread has their connection", async () => {
    // The database opens only once half the callers have left: their
    // heartbeats wait in the main thread's queue meanwhile (server.ts listens
    // for agents before the database is open).
    const db = await testBackends()[0]!.create();
    const bmdb = await openBmdb(db.url);
    const pki = await testPki();
    const agents = await Promise.all(
      Array.from({ length: 2 * CONNECTIONS }, async () => {
        const machineId = await bmdb.createMachine({});
        const a = await agentTls();
        await bmdb.registerAgent(machineId, a.publicKey);
        return { machineId, ...a };
      }),
    );
    const port = await freePort();
    let open!: (b: Bmdb) => void;
    const starting = startServerOn(bmdb, pki, { publicListenAddress: `127.0.0.1:${port}`, agentThreads: 2, bmdb: new Promise<Bmdb>((r) => (open = r)) });
    const address = `127.0.0.1:${port}`;
    // Once the port takes a connection, every thread listens within
    // milliseconds (the main thread last): then connect, so both get some.
    (await retrying(() => rawSession(address, agents[0]!.tls))).destroy();
    await new Promise((r) => setTimeout(r, 300));
    const sessions = await Promise.all(agents.map((a) => rawSession(address, a.tls)));
    const calls = sessions.map((s, i) => rawCall(s, heartbeat(agents[i]!.machineId)));
    // Every call is read and queued; then the first half hang up.
    await new Promise((r) => setTimeout(r, 500));
    sessions.slice(0, CONNECTIONS).forEach((s) => s.destroy());
    await new Promise((r) => setTimeout(r, 300));
    open(bmdb);
    const server = await starting;
    try {
      const codes = (await Promise.all(calls)).map((r) => r.code);
      expect(codes.slice(CONNECTIONS)).toEqual(agents.slice(CONNECTIONS).map(() => 0));
      expect(server.agentConnectionsByThread.every((c) => c.authenticated > 0)).toBe(true);
      expect(server.heartbeats.counters.droppedGone).toBe(CONNECTIONS);
      const written = await Promise.all(agents.map(async (a) => (await bmdb.getMachine(a.machineId)).agentHeartbeat !== null));
      expect(written).toEqual(agents.map((_, i) => i >= CONNECTIONS));
    } finally {
      sessions.forEach((s) => s.destroy());
      await server.stop();
      await bmdb.close();
      await db.drop();
    }
  });
});

/** A port nobody listens on (for a server whose address must be known before it has started). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** f, again every 50 ms while it fails (the listener is not open yet), for 10 s at most. */
async function retrying<T>(f: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await f();
    } catch (err) {
      if (i >= 200) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe("agent listener threads: shutdown and defaults", () => {
  it("gives every thread's socket the full accept queue, and closes them all on stop: the port refuses connections afterwards", async () => {
    const t = await startTestServer(testBackends()[0]!, { agentThreads: 2 });
    const port = splitAddress(t.server.publicAddress)[1];
    // Node ignores a backlog option on a socket given by fd (it listened with 511): server/listen.ts passes it as an argument.
    expect(acceptQueues(port)).toEqual([deepestAcceptQueue(), deepestAcceptQueue()]);
    await t.stop();
    const refused = await Promise.all(
      Array.from({ length: 8 }, () => new Promise<string>((resolve) => netConnect({ host: "127.0.0.1", port }).once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "")).once("connect", () => resolve("connected")))),
    );
    expect(refused).toEqual(refused.map(() => "ECONNREFUSED"));
  });

  it("runs one thread below 4 cores, half the cores from 4, at most 4", () => {
    expect([1, 2, 3, 4, 6, 8, 16].map((cores) => defaultAgentThreads(cores))).toEqual([1, 1, 1, 2, 3, 4, 4]);
  });
});
