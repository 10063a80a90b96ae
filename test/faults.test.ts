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
// cluster of the test's own, 50 agents heartbeating back to back through
// grpc-js, each heartbeat carrying a distinct hardware report
// ("<agent>-<seq>" as the manufacturer). After each fault the operator API
// must show, for every agent, its last acknowledged report or a later one it
// sent: whatever got OK was committed.

const AGENTS = 50;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  agent: number;
  seq: number;
  sentAt: number;
  at: number;
  code: grpc.status;
}

interface Agent {
  index: number;
  machineId: string;
  client: ReturnType<typeof createClient<(typeof AgentCallback)["method"]>>;
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

const manufacturer = (a: Agent, seq: number) => `agent${a.index}-${seq}`;

/** A bmaas-server process with AGENTS registered agents, and the load and checks run against it. */
interface Fleet {
  server: ServerProcess;
  agents: Agent[];
  outcomes: Outcome[];
  /** Starts the server again with the same arguments (same ports). */
  restart(): Promise<void>;
  /** Runs every agent back to back until the returned function is called. */
  load(): () => Promise<void>;
  /** Resolves once every agent has had an OK answer after `since` (fails after 30 s). */
  allServed(since?: number): Promise<void>;
  /** Every agent's stored report is its last acknowledged one or a later one it sent. */
  expectNothingAcknowledgedLost(): Promise<void>;
  close(): Promise<void>;
}

async function startFleet(databaseUrl: string, dir: string): Promise<Fleet> {
  const certs = join(dir, "certs");
  // Fixed ports, so that agents reconnect to a restarted server.
  const [pub, internal] = [await freePort(), await freePort()];
  const args = [
    "--dev-certs", certs,
    "--database-url", databaseUrl,
    "--public-listen", `127.0.0.1:${pub}`,
    "--internal-listen", `127.0.0.1:${internal}`,
    "--metrics-listen", "",
    "--stale-sweep-interval", "0",
    "--shutdown-grace", "1",
  ];
  let server = await startServerProcess(args);
  const ca = readFileSync(join(certs, "ca.pem"));
  const opCreds = grpc.credentials.createSsl(ca, readFileSync(join(certs, "operator-key.pem")), readFileSync(join(certs, "operator.pem")));
  const operator = createClient(OperatorService, server.internalAddress, opCreds, {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 500,
  });
  const agents: Agent[] = [];
  const outcomes: Outcome[] = [];
  const running = new Set<() => Promise<void>>();
  for (let index = 0; index < AGENTS; index++) {
    const key = generateAgentKey();
    const cert = await createAgentCertificate(key);
    const { machineId } = await operator.createMachine({});
    await operator.registerAgent({ machineId, publicKey: rawEd25519PublicKey(key) });
    const creds = grpc.credentials.createSsl(ca, Buffer.from(cert.key), Buffer.from(cert.cert));
    agents.push({ index, machineId, client: createClient(AgentCallback, server.publicAddress, creds, AGENT_CHANNEL), sent: 0, acked: 0 });
  }

  return {
    get server() {
      return server;
    },
    agents,
    outcomes,
    async restart() {
      server = await startServerProcess(args);
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
    async close() {
      await Promise.all([...running].map((stop) => stop()));
      for (const a of agents) a.client.close();
      operator.close();
      await server.kill("SIGKILL");
    },
  };
}

/** SIGKILL under load, restart on the same ports: what was acknowledged is there, every agent is served again. */
async function sigkillAndRestart(fleet: Fleet): Promise<void> {
  let stop = fleet.load();
  await fleet.allServed();
  await sleep(500);
  await fleet.server.kill("SIGKILL");
  const killedAt = Date.now();
  await stop();
  expect(fleet.agents.every((a) => a.acked > 0)).toBe(true);

  await fleet.restart();
  const restartedAt = Date.now();
  await fleet.expectNothingAcknowledgedLost();

  stop = fleet.load();
  try {
    await fleet.allServed(restartedAt);
    await sleep(500);
  } finally {
    await stop();
  }
  expect(fleet.server.alive).toBe(true);
  await fleet.expectNothingAcknowledgedLost();
  console.log(`SIGKILL: restarted and listening ${restartedAt - killedAt} ms after the kill`);
}

describe.skipIf(!postgresBinDir())("faults on PostgreSQL: bmaas-server under back-to-back load", () => {
  let pgc: PrivatePostgres;
  let dir: string;
  let fleet: Fleet;

  beforeAll(async () => {
    pgc = await startPrivatePostgres();
    dir = mkdtempSync(join(tmpdir(), "bmaas-faults-"));
    fleet = await startFleet(pgc.url(), dir);
  }, 120_000);

  afterAll(async () => {
    await fleet?.close();
    await pgc?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("PostgreSQL stopped for 3 s: the server lives, calls are UNAVAILABLE, the first OK comes < 1 s after it is back, nothing acknowledged is lost", async () => {
    const { outcomes } = fleet;
    const stop = fleet.load();
    let stoppedAt: number;
    let upAt: number;
    let logsDuringOutage: number;
    try {
      await fleet.allServed();
      await sleep(500);
      await pgc.stop("fast");
      stoppedAt = Date.now();
      const logsAtStop = fleet.server.logs().length;
      await sleep(3_000);
      await pgc.start();
      upAt = Date.now();
      logsDuringOutage = fleet.server.logs().length - logsAtStop;
      await sleep(2_000);
    } finally {
      await stop();
    }

    expect(fleet.server.alive, fleet.server.stderr()).toBe(true);
    const during = outcomes.filter((o) => o.sentAt >= stoppedAt && o.at <= upAt);
    expect(during.length).toBeGreaterThan(AGENTS);
    const codes = new Set(during.map((o) => grpc.status[o.code]));
    expect([...codes]).toEqual(["UNAVAILABLE"]);
    // Answered at once by the breaker, not after dialling or a deadline.
    const slow = during.filter((o) => o.at - o.sentAt > 500);
    expect(slow.length).toBeLessThan(during.length / 20);

    const firstOk = outcomes.find((o) => o.code === grpc.status.OK && o.at > stoppedAt);
    expect(firstOk, "no heartbeat succeeded after PostgreSQL came back").toBeDefined();
    expect(firstOk!.at - upAt).toBeLessThan(1_000);
    // Every agent got through again.
    const recovered = new Set(outcomes.filter((o) => o.code === grpc.status.OK && o.at > upAt).map((o) => o.agent));
    expect(recovered.size).toBe(AGENTS);

    await fleet.expectNothingAcknowledgedLost();
    console.log(
      `postgres outage: ${during.length} calls answered UNAVAILABLE in ${upAt - stoppedAt} ms, first OK ${firstOk!.at - upAt} ms after it was back, ` +
        `${logsDuringOutage} server log lines during the outage`,
    );
  });

  it("the server SIGKILLed under load and restarted: nothing acknowledged is lost, every agent is served again", async () => {
    await sigkillAndRestart(fleet);
  });
});

describe("faults on PGlite on disk: bmaas-server under back-to-back load", () => {
  let dir: string;
  let fleet: Fleet;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bmaas-faults-pglite-"));
    fleet = await startFleet(join(dir, "db"), dir);
  }, 120_000);

  afterAll(async () => {
    await fleet?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the server (and its PGlite worker) SIGKILLed under load and restarted: nothing acknowledged is lost", async () => {
    await sigkillAndRestart(fleet);
  });
});
