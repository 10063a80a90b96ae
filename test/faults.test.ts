import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OperatorService } from "../gen/bmaas/operator/v1/operator_pb.js";
import { AgentCallback } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { createAgentCertificate, generateAgentKey, rawEd25519PublicKey } from "../lib/certs.js";
import { createClient } from "../lib/grpc-adapter.js";
import { freePort, postgresBinDir, startPrivatePostgres, type PrivatePostgres } from "./helpers/private-postgres.js";
import { startServerProcess, type ServerProcess } from "./helpers/server-process.js";

// The fault suite, black-box: a real bmaas-server process on a PostgreSQL
// cluster of the test's own (or PGlite on disk), 50 agents heartbeating back
// to back through grpc-js, each heartbeat carrying a distinct hardware report
// ("<agent>-<seq>" as the manufacturer). After each fault the operator API
// must show, for every agent, its last acknowledged report or a later one it
// sent: whatever got OK was committed.
//
// Faults: PostgreSQL stopped and started under load (several cycles), the
// server SIGTERMed and SIGKILLed under load and restarted (both backends),
// and one of two replicas on one PostgreSQL SIGKILLed under load.

const AGENTS = 50;
/** --shutdown-grace of the servers under test, in seconds. */
const GRACE_S = 5;
/**
 * PostgreSQL stop/start cycles under load in the outage test, and how long
 * each outage lasts. The bar is 10 of 10 restarts survived; 10 cycles
 * do not fit this file's time budget (~75 s on 2 cores), so CI runs 3 short
 * ones; FAULT_OUTAGE_CYCLES=10 runs the full bar (done for the note).
 */
const OUTAGE_CYCLES = Number(process.env.FAULT_OUTAGE_CYCLES ?? 3);
const OUTAGE_MS = 1_500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  agent: number;
  seq: number;
  sentAt: number;
  at: number;
  code: grpc.status;
}

type AgentClient = ReturnType<typeof createClient<(typeof AgentCallback)["method"]>>;
type OperatorClient = ReturnType<typeof createClient<(typeof OperatorService)["method"]>>;

interface Agent {
  index: number;
  machineId: string;
  creds: grpc.ChannelCredentials;
  client: AgentClient;
  /** Highest sequence number sent. */
  sent: number;
  /** Sequence number of the last heartbeat answered OK (0: none). */
  acked: number;
}

// Own connection per agent (its own certificate), and quick reconnects after
// the server restarts (grpc-js waits 1 s, then longer, by default).
const AGENT_CHANNEL: grpc.ClientOptions = {
  "grpc.use_local_subchannel_pool": 1,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 500,
};
const OPERATOR_CHANNEL: grpc.ClientOptions = {
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 500,
};

/**
 * The channel target for an agent that knows several server addresses, in
 * order of preference: grpc-js's pick_first connects to the first that
 * answers and, when that connection goes, to the first that answers again
 * (as an agent given a DNS name with several addresses would).
 */
const target = (addresses: string[]) => (addresses.length === 1 ? addresses[0]! : `ipv4:${addresses.join(",")}`);

const manufacturer = (a: Agent, seq: number) => `agent${a.index}-${seq}`;

/** A bmaas-server process with AGENTS registered agents, and the load and checks run against it. */
interface Fleet {
  server: ServerProcess;
  agents: Agent[];
  outcomes: Outcome[];
  operator: OperatorClient;
  ca: Buffer;
  /** Starts the server again with the same arguments (same ports). */
  restart(): Promise<void>;
  /** Another server on the same database and certificates, on ports of its own, with metrics; killed by close(). */
  startReplica(): Promise<ServerProcess>;
  /** An operator client of a given server (closed by close()). */
  operatorOf(server: ServerProcess): OperatorClient;
  /** Points an agent at these addresses (first preferred), on a new channel. */
  connect(a: Agent, addresses: string[]): void;
  /** Runs every agent back to back until the returned function is called. */
  load(): () => Promise<void>;
  /** Resolves once every agent has had an OK answer after `since` (fails after 30 s). */
  allServed(since?: number): Promise<void>;
  /** Every agent's stored report is its last acknowledged one or a later one it sent. Only with the load stopped. */
  expectNothingAcknowledgedLost(): Promise<void>;
  close(): Promise<void>;
}

async function startFleet(databaseUrl: string, dir: string): Promise<Fleet> {
  const certs = join(dir, "certs");
  // Fixed ports, so that agents reconnect to a restarted server.
  const [pub, internal] = [await freePort(), await freePort()];
  const common = ["--dev-certs", certs, "--database-url", databaseUrl, "--stale-sweep-interval", "0", "--shutdown-grace", String(GRACE_S)];
  const args = [...common, "--public-listen", `127.0.0.1:${pub}`, "--internal-listen", `127.0.0.1:${internal}`, "--metrics-listen", "", "--web-listen", ""];
  const startedAt = Date.now();
  let server = await startServerProcess(args);
  const listeningAt = Date.now();
  const replicas: ServerProcess[] = [];
  const operators: OperatorClient[] = [];
  const agents: Agent[] = [];
  const outcomes: Outcome[] = [];
  const running = new Set<() => Promise<void>>();

  const close = async () => {
    await Promise.allSettled([...running].map((stop) => stop()));
    for (const a of agents) a.client.close();
    for (const o of operators) o.close();
    await Promise.allSettled([server, ...replicas].map((s) => s.kill("SIGKILL")));
  };

  try {
    const ca = readFileSync(join(certs, "ca.pem"));
    const opCreds = grpc.credentials.createSsl(ca, readFileSync(join(certs, "operator-key.pem")), readFileSync(join(certs, "operator.pem")));
    const operatorOf = (s: ServerProcess) => {
      const o = createClient(OperatorService, s.internalAddress, opCreds, OPERATOR_CHANNEL);
      operators.push(o);
      return o;
    };
    const operator = operatorOf(server);
    // Registered a few at a time: quicker than one by one, gentle on PGlite.
    for (let batch = 0; batch < AGENTS; batch += 10) {
      const registered = await Promise.all(
        Array.from({ length: Math.min(10, AGENTS - batch) }, async (_, i) => {
          const index = batch + i;
          const key = generateAgentKey();
          const cert = await createAgentCertificate(key);
          const { machineId } = await operator.createMachine({});
          await operator.registerAgent({ machineId, publicKey: rawEd25519PublicKey(key) });
          const creds = grpc.credentials.createSsl(ca, Buffer.from(cert.key), Buffer.from(cert.cert));
          return { index, machineId, creds, client: createClient(AgentCallback, server.publicAddress, creds, AGENT_CHANNEL), sent: 0, acked: 0 };
        }),
      );
      agents.push(...registered);
    }
    console.log(`fleet: server listening after ${listeningAt - startedAt} ms, ${AGENTS} agents registered ${Date.now() - listeningAt} ms later`);

    return {
      get server() {
        return server;
      },
      agents,
      outcomes,
      operator,
      ca,
      async restart() {
        server = await startServerProcess(args);
      },
      async startReplica() {
        const [p, i, m] = [await freePort(), await freePort(), await freePort()];
        const replica = await startServerProcess([
          ...common,
          "--public-listen", `127.0.0.1:${p}`,
          "--internal-listen", `127.0.0.1:${i}`,
          "--metrics-listen", `127.0.0.1:${m}`,
          "--web-listen", "",
        ]);
        replicas.push(replica);
        return replica;
      },
      operatorOf,
      connect(a, addresses) {
        a.client.close();
        a.client = createClient(AgentCallback, target(addresses), a.creds, AGENT_CHANNEL);
      },
      load() {
        let stopped = false;
        const loops = agents.map(async (a) => {
          while (!stopped) {
            const seq = ++a.sent;
            const sentAt = Date.now();
            let code = grpc.status.OK;
            try {
              await a.client.heartbeat(
                { machineId: a.machineId, hardwareReport: { report: { manufacturer: manufacturer(a, seq) } } },
                { deadline: Date.now() + 5_000 },
              );
              a.acked = seq;
            } catch (e) {
              code = (e as grpc.ServiceError).code;
            }
            outcomes.push({ agent: a.index, seq, sentAt, at: Date.now(), code });
            // Failures come back fast (that is the point); do not spin on them.
            if (code !== grpc.status.OK) await sleep(10);
          }
        });
        const stop = async () => {
          stopped = true;
          running.delete(stop);
          await Promise.all(loops);
        };
        running.add(stop);
        return stop;
      },
      async allServed(since = 0) {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const served = new Set(outcomes.filter((o) => o.code === grpc.status.OK && o.at > since).map((o) => o.agent));
          if (served.size === AGENTS) return;
          if (Date.now() > deadline) {
            const codes = outcomes.filter((o) => o.at > since && o.code !== grpc.status.OK).map((o) => grpc.status[o.code]);
            throw new Error(`only ${served.size} of ${AGENTS} agents served within 30 s; errors: ${[...new Set(codes)].join(", ")}`);
          }
          await sleep(50);
        }
      },
      async expectNothingAcknowledgedLost() {
        expect(running.size, "load still running").toBe(0);
        const problems: string[] = [];
        await Promise.all(
          agents.map(async (a) => {
            const m = (await operator.getMachine({ machineId: a.machineId }, { deadline: Date.now() + 10_000 })).machine;
            const stored = m?.hardwareReport?.report?.manufacturer ?? "";
            const match = /^agent(\d+)-(\d+)$/.exec(stored);
            const seq = match && Number(match[1]) === a.index ? Number(match[2]) : 0;
            if (seq < a.acked || seq > a.sent) problems.push(`agent ${a.index}: acknowledged ${a.acked}, sent up to ${a.sent}, stored "${stored}"`);
          }),
        );
        expect(problems).toEqual([]);
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Load until every agent has been served since `since`, a little more, then stop it. */
async function serveAll(fleet: Fleet, since: number, extraMs: number): Promise<void> {
  const stop = fleet.load();
  try {
    await fleet.allServed(since);
    await sleep(extraMs);
  } finally {
    await stop();
  }
}

/** SIGKILL under load, restart on the same ports: what was acknowledged is there, every agent is served again. */
async function sigkillAndRestart(fleet: Fleet): Promise<void> {
  const stop = fleet.load();
  let killedAt: number;
  try {
    await fleet.allServed(Date.now());
    await sleep(300);
    killedAt = Date.now();
    await fleet.server.kill("SIGKILL");
  } finally {
    await stop();
  }
  expect(fleet.agents.every((a) => a.acked > 0)).toBe(true);

  await fleet.restart();
  const restartedAt = Date.now();
  await fleet.expectNothingAcknowledgedLost();

  await serveAll(fleet, restartedAt, 300);
  expect(fleet.server.alive).toBe(true);
  await fleet.expectNothingAcknowledgedLost();
  console.log(`SIGKILL: restarted and listening ${restartedAt - killedAt} ms after the kill, all ${AGENTS} agents served ${Date.now() - restartedAt} ms later`);
}

/**
 * SIGTERM under load: the server drains (in-flight heartbeats answered, no
 * cut-off at the grace period), exits 0 within --shutdown-grace, and after a
 * restart what was acknowledged is there and every agent is served again.
 */
async function sigtermAndRestart(fleet: Fleet): Promise<void> {
  const { outcomes } = fleet;
  const stop = fleet.load();
  let termAt: number;
  let exitMs: number;
  let code: number | null | "timeout";
  const server = fleet.server;
  try {
    await fleet.allServed(Date.now());
    await sleep(300);
    termAt = Date.now();
    server.proc.kill("SIGTERM");
    code = await Promise.race([server.exited, sleep(GRACE_S * 1000 + 5_000).then(() => "timeout" as const)]);
    exitMs = Date.now() - termAt;
  } finally {
    await stop();
  }
  expect(code, server.stderr()).toBe(0);
  expect(exitMs).toBeLessThan(GRACE_S * 1000);
  const messages = server.logs().map((l) => l.msg);
  expect(messages).toContain("stopped");
  expect(messages).not.toContain("shutdown grace period over: cancelling remaining RPCs");
  // Calls in flight when the signal came were answered, not cut off.
  const inFlight = outcomes.filter((o) => o.sentAt < termAt && o.at >= termAt);
  const drained = inFlight.filter((o) => o.code === grpc.status.OK);
  expect(drained.length).toBeGreaterThan(0);
  // Whatever was refused while stopping was refused as "try again".
  const after = outcomes.filter((o) => o.at >= termAt);
  const codes = new Set(after.filter((o) => o.code !== grpc.status.OK).map((o) => grpc.status[o.code]));
  expect([...codes].filter((c) => c !== "UNAVAILABLE")).toEqual([]);
  expect(fleet.agents.every((a) => a.acked > 0)).toBe(true);

  await fleet.restart();
  const restartedAt = Date.now();
  await fleet.expectNothingAcknowledgedLost();

  await serveAll(fleet, restartedAt, 300);
  expect(fleet.server.alive).toBe(true);
  await fleet.expectNothingAcknowledgedLost();
  console.log(
    `SIGTERM: exit 0 ${exitMs} ms after the signal (grace ${GRACE_S} s), ${drained.length} of ${inFlight.length} calls in flight answered OK, ` +
      `refused: ${[...codes].join(", ") || "none"}; restarted, all ${AGENTS} agents served ${Date.now() - restartedAt} ms after it listened`,
  );
}

interface PostgresSetup {
  pgc: PrivatePostgres;
  fleet: Fleet;
  /** A second server on the fleet's database, for the replica test (started with the fleet so that its boot overlaps the setup). */
  replica: ServerProcess;
  tearDown(): Promise<void>;
}
interface PgliteSetup {
  fleet: Fleet;
  tearDown(): Promise<void>;
}

/** Removes what a setup made, once, whatever of it exists. */
function tearDownOnce(parts: { fleet?: Fleet; pgc?: PrivatePostgres; dir: string }): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () =>
    (done ??= (async () => {
      await parts.fleet?.close().catch(() => {});
      await parts.pgc?.destroy().catch(() => {});
      rmSync(parts.dir, { recursive: true, force: true });
    })());
}

async function setUpPostgres(): Promise<PostgresSetup> {
  const parts: { fleet?: Fleet; pgc?: PrivatePostgres; dir: string } = { dir: mkdtempSync(join(tmpdir(), "bmaas-faults-")) };
  const tearDown = tearDownOnce(parts);
  try {
    const pgc = (parts.pgc = await startPrivatePostgres());
    const fleet = (parts.fleet = await startFleet(pgc.url(), parts.dir));
    const [replica, warm] = await Promise.allSettled([fleet.startReplica(), serveAll(fleet, Date.now(), 0)]);
    if (replica.status === "rejected") throw replica.reason;
    if (warm.status === "rejected") throw warm.reason;
    return { pgc, fleet, replica: replica.value, tearDown };
  } catch (e) {
    await tearDown();
    throw e;
  }
}

async function setUpPglite(): Promise<PgliteSetup> {
  const parts: { fleet?: Fleet; dir: string } = { dir: mkdtempSync(join(tmpdir(), "bmaas-faults-pglite-")) };
  const tearDown = tearDownOnce(parts);
  try {
    const fleet = (parts.fleet = await startFleet(join(parts.dir, "db"), parts.dir));
    await serveAll(fleet, Date.now(), 0);
    return { fleet, tearDown };
  } catch (e) {
    await tearDown();
    throw e;
  }
}

// Both backends' fleets are set up (booted, registered, warmed up) at once
// when both run, to overlap their boots; the faults themselves then run one
// at a time, nothing else loading the machine.
let postgresSetup: Promise<PostgresSetup> | undefined;
let pgliteSetup: Promise<PgliteSetup> | undefined;
const postgresFleet = () => (postgresSetup ??= setUpPostgres());
const pgliteFleet = () => (pgliteSetup ??= setUpPglite());

// Whatever was set up is removed, even when a describe's own afterAll did not run.
afterAll(async () => {
  await Promise.allSettled([postgresSetup?.then((s) => s.tearDown()), pgliteSetup?.then((s) => s.tearDown())]);
});

describe.skipIf(!postgresBinDir())("faults on PostgreSQL: bmaas-server under back-to-back load", () => {
  let pgc: PrivatePostgres;
  let fleet: Fleet;
  let replica: ServerProcess;

  beforeAll(async () => {
    const [pg] = await Promise.allSettled([postgresFleet(), pgliteFleet()]);
    if (pg.status === "rejected") throw pg.reason;
    ({ pgc, fleet, replica } = pg.value);
  }, 120_000);

  afterAll(async () => {
    await (await postgresSetup?.catch(() => undefined))?.tearDown();
  });

  it(`PostgreSQL stopped ${OUTAGE_CYCLES} times for ${OUTAGE_MS / 1000} s: the server lives, calls are UNAVAILABLE, the first OK comes < 1 s after it is back, nothing acknowledged is lost`, async () => {
    const { outcomes } = fleet;
    const report: string[] = [];
    for (let cycle = 1; cycle <= OUTAGE_CYCLES; cycle++) {
      const stop = fleet.load();
      let stoppedAt: number;
      let startingAt: number;
      let upAt: number;
      let logsDuringOutage: number;
      try {
        await fleet.allServed(Date.now());
        await sleep(300);
        await pgc.stop("fast");
        stoppedAt = Date.now();
        const logsAtStop = fleet.server.logs().length;
        await sleep(OUTAGE_MS);
        startingAt = Date.now();
        await pgc.start();
        upAt = Date.now();
        logsDuringOutage = fleet.server.logs().length - logsAtStop;
        // Every agent gets through again.
        await fleet.allServed(upAt);
        await sleep(200);
      } finally {
        await stop();
      }

      expect(fleet.server.alive, fleet.server.stderr()).toBe(true);
      // Certainly down from the end of pg_ctl stop to the start of pg_ctl start.
      const during = outcomes.filter((o) => o.sentAt >= stoppedAt && o.at <= startingAt);
      expect(during.length).toBeGreaterThan(AGENTS);
      const codes = new Set(during.map((o) => grpc.status[o.code]));
      expect([...codes]).toEqual(["UNAVAILABLE"]);
      // Answered at once by the breaker, not after dialling or a deadline.
      const slow = during.filter((o) => o.at - o.sentAt > 500);
      expect(slow.length).toBeLessThan(during.length / 20);
      // The log tells of the state change, not of every refused call.
      expect(logsDuringOutage).toBeLessThan(10);

      // Sent after the stop (a call in flight at the stop may still be answered OK just after it).
      // Can come a little before upAt: PostgreSQL accepts connections before pg_ctl start -w notices.
      const firstOk = outcomes.find((o) => o.code === grpc.status.OK && o.sentAt >= stoppedAt);
      expect(firstOk, "no heartbeat succeeded after PostgreSQL came back").toBeDefined();
      expect(firstOk!.at - upAt).toBeLessThan(1_000);
      const allBack = Math.max(...fleet.agents.map((a) => outcomes.find((o) => o.agent === a.index && o.code === grpc.status.OK && o.at > upAt)!.at));

      await fleet.expectNothingAcknowledgedLost();
      report.push(
        `cycle ${cycle}: ${during.length} calls UNAVAILABLE in ${startingAt - stoppedAt} ms down, first OK ${firstOk!.at - upAt} ms and every agent ` +
          `${allBack - upAt} ms after it was back, ${logsDuringOutage} server log lines during the outage`,
      );
    }
    console.log(`postgres outages:\n  ${report.join("\n  ")}`);
  });

  it("the server SIGTERMed under load: drains, exits 0 within the grace; after a restart nothing acknowledged is lost, every agent is served", async () => {
    await sigtermAndRestart(fleet);
  });

  it("the server SIGKILLed under load and restarted: nothing acknowledged is lost, every agent is served again", async () => {
    await sigkillAndRestart(fleet);
  });

  it("two replicas on one PostgreSQL, one SIGKILLed under load: its agents move to the other, nothing acknowledged by either is lost, a watch on the survivor sees what came through the other", async () => {
    const { outcomes, agents } = fleet;
    const a = fleet.server;
    const b = replica;
    expect(b.alive, b.stderr()).toBe(true);
    // Agents split across both: the odd ones move to B, knowing A as their
    // second address; the even ones stay on A.
    const onB = (agent: Agent) => agent.index % 2 === 1;
    for (const agent of agents.filter(onB)) fleet.connect(agent, [b.publicAddress, a.publicAddress]);

    // A watch on A, live before anything happens through B.
    const seen: Array<{ machineId: string; kind: string }> = [];
    const watch = fleet.operator.watchMachines({});
    watch.on("data", (m: { item: { case: string; value: { machineId: string; kind: string } } }) => {
      if (m.item.case === "event") seen.push({ machineId: m.item.value.machineId, kind: m.item.value.kind });
    });
    watch.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      watch.once("metadata", () => resolve());
      watch.once("error", reject);
    });

    const stop = fleet.load();
    let killedAt: number;
    let newMachine: string;
    let onBConnections: number;
    let onBOk: number;
    try {
      await fleet.allServed(Date.now());
      // A machine created, registered and heartbeating only through B.
      const opB = fleet.operatorOf(b);
      const key = generateAgentKey();
      const cert = await createAgentCertificate(key);
      newMachine = (await opB.createMachine({})).machineId;
      await opB.registerAgent({ machineId: newMachine, publicKey: rawEd25519PublicKey(key) });
      const extra = createClient(AgentCallback, b.publicAddress, grpc.credentials.createSsl(fleet.ca, Buffer.from(cert.key), Buffer.from(cert.cert)));
      try {
        await extra.heartbeat({ machineId: newMachine }, { deadline: Date.now() + 5_000 });
      } finally {
        extra.close();
      }
      // B really carries its half of the fleet.
      const metrics = await (await fetch(`http://${b.metricsAddress}/metrics`)).text();
      const metric = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? NaN);
      onBConnections = metric(/^bmaas_agent_connections\{state="authenticated"\} (\d+)/m);
      onBOk = metric(/^bmaas_agent_heartbeats_total\{code="OK"\} (\d+)/m);
      await sleep(300);
      // Before the signal: its agents' calls fail as it dies, before its exit is seen.
      killedAt = Date.now();
      await b.kill("SIGKILL");
      // Every agent served after the kill: B's through A.
      await fleet.allServed(killedAt);
      await sleep(200);
    } finally {
      await stop();
      watch.cancel();
    }

    // pick_first also dials A when B takes over 250 ms to connect, and keeps whichever is first:
    // most of B's half, not necessarily all of it, is on B.
    expect(onBConnections).toBeGreaterThanOrEqual(AGENTS / 4);
    expect(onBConnections).toBeLessThanOrEqual(AGENTS / 2 + 1);
    expect(onBOk).toBeGreaterThan(AGENTS / 4);
    expect(a.alive, a.stderr()).toBe(true);
    // Only B's agents noticed, and only as UNAVAILABLE.
    const failed = outcomes.filter((o) => o.at >= killedAt && o.code !== grpc.status.OK);
    expect(failed.filter((o) => !onB(agents[o.agent]!))).toEqual([]);
    expect([...new Set(failed.map((o) => grpc.status[o.code]))].filter((c) => c !== "UNAVAILABLE")).toEqual([]);
    const moved = Math.max(...agents.filter(onB).map((ag) => outcomes.find((o) => o.agent === ag.index && o.code === grpc.status.OK && o.at > killedAt)!.at));

    await fleet.expectNothingAcknowledgedLost();
    const kinds = seen.filter((e) => e.machineId === newMachine).map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(["machine_created", "agent_registered", "first_heartbeat"]));
    console.log(
      `replicas: B had ${onBConnections} agent connections and ${onBOk} OK heartbeats; after its SIGKILL ${new Set(failed.map((o) => o.agent)).size} of its agents ` +
        `saw ${failed.length} UNAVAILABLE, all on A ${moved - killedAt} ms after the kill; A's watch saw ${kinds.join(", ")} caused through B`,
    );
  });
});

describe("faults on PGlite on disk: bmaas-server under back-to-back load", () => {
  let fleet: Fleet;

  beforeAll(async () => {
    ({ fleet } = await pgliteFleet());
  }, 120_000);

  afterAll(async () => {
    await (await pgliteSetup?.catch(() => undefined))?.tearDown();
  });

  it("the server SIGTERMed under load: drains (its PGlite worker too), exits 0 within the grace; after a restart nothing acknowledged is lost", async () => {
    await sigtermAndRestart(fleet);
  });

  it("the server (and its PGlite worker) SIGKILLed under load and restarted: nothing acknowledged is lost", async () => {
    await sigkillAndRestart(fleet);
  });
});
