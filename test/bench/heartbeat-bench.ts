// Heartbeat benchmark (issue 8): prints figures, asserts nothing.
//
// An independent load generator (test/bench/loadgen, grpc-go + crypto/tls, one
// process; every simulated agent has its own Ed25519 key, ephemeral
// self-signed certificate, source address in 127.0.1.0/24 and persistent
// connection) against each target, every target its own process:
//
//   ceiling   test/bench/bench-server.js empty: the server's agent listener
//             (TLS, HTTP/2, request decoding) with a handler that writes nothing
//   pglite    the real `bmaas-server` binary on PGlite on disk (`npm start`'s default)
//   postgres  the real binary on PostgreSQL: a fresh database per run, dropped after
//
// Machines are registered before a server starts, by bulk SQL; each scenario
// starts its own server. Prints a table per target as it finishes (notes
// under it: connect time, RSS, transactions and what the server's metrics
// counted), then a markdown summary; progress goes to stderr. Scenarios:
//
//   b2b        BENCH_AGENTS agents back to back: heartbeats/s, ratio to the
//              ceiling, p50/p99, errors by code. The ceiling alone runs
//              BENCH_SECONDS. A database target runs with the ceiling beside it,
//              both servers up and each with its own load generator, taking
//              turns: BENCH_B2B_SLICES slices each of BENCH_B2B_SLICE_SECONDS, in
//              the order T C C T T C C T …, and the ratio is of their totals.
//              This machine's speed drifts by a third within minutes, so runs
//              one after the other (even alternating rounds of 10 s) gave
//              ratios anywhere from 0.75x to 0.99x for the same code
//   fleet      BENCH_FLEET agents connect (time until all were served), then offer
//              BENCH_RATE heartbeats/s open loop for BENCH_STEADY_SECONDS:
//              p50/p99, errors by code, server RSS (max during the steady phase, peak)
//   reconnect  after the fleet's steady phase: SIGTERM the server, start it
//              again on the same database and port; time until every agent was
//              served again (from the new server's agent listener opening, and from the
//              old one's exit), agents never served again. The ceiling connects
//              and restarts too, right after each database target's fleet (with
//              5 s of steady load between), and connect and storm are compared
//              with that run
//   overload   the server with --heartbeat-budget BENCH_BUDGET, the fleet
//              offering 2 × budget open loop: OK/s, p99 of OK, counts by code,
//              p99 of the refused ones, how many carried grpc-retry-pushback-ms
//   large      PostgreSQL only: BENCH_LARGE_MACHINES machines (the fleet's, and
//              the rest with agent keys and recent heartbeats), then b2b and fleet
//              (without reconnect) again, as ratios to the figures of the
//              database that holds only the fleet's machines, in turns with a
//              server on that database (as the targets' b2b with the ceiling):
//              b2b in BENCH_B2B_SLICES slices, the fleet in 5 s slices for
//              BENCH_STEADY_SECONDS each
//
// Environment (defaults in brackets):
//   BENCH_ONLY            targets to run, comma-separated [ceiling,pglite,postgres]
//   BENCH_SCENARIOS       [b2b,fleet,reconnect,overload,large]
//   BENCH_AGENTS          agents of the back-to-back scenario [200]
//   BENCH_SECONDS         length of the back-to-back scenario [10]
//   BENCH_B2B_SLICES      back-to-back slices of each database target and of the ceiling beside it [8]
//   BENCH_B2B_SLICE_SECONDS  each slice's length, its first 0.25 s not counted [2.5]
//   BENCH_FLEET           agents of fleet, reconnect, overload and large [10000]
//   BENCH_RATE            heartbeats/s the fleet offers [1000]
//   BENCH_STEADY_SECONDS  steady phase after all have connected [60]
//   BENCH_BUDGET          --heartbeat-budget of the overload scenario; 2× is offered [1000]
//   BENCH_OVERLOAD_SECONDS length of the overload phase [30]
//   BENCH_LARGE           1 runs the large-database scenario, 0 skips it [1]
//   BENCH_LARGE_MACHINES  machines in the large database [1000000]
//   BENCH_DATABASE_URL    PostgreSQL to create databases in [postgres://postgres@127.0.0.1:5432/test]
//   BENCH_DEADLINE_MS     per-call deadline of the agents [5000]
//   BENCH_GIVEUP_SECONDS  (re)connect: an agent not served by then failed for good [60]
//   BENCH_DIAL_CONCURRENCY agents connecting at once [1000]
//   BENCH_TLS_RESUME      1: agents may resume TLS sessions on reconnect [0]
//   BENCH_NEW_FLAGS       0: leave out --agent-max-connections[-per-ip] and
//                         --heartbeat-budget, for a server without them [1]
//   BENCH_SERVER_ARGS     more bmaas-server flags, space-separated [none]
//   BENCH_JSON            also write every raw figure to this file [none]
//
// Needs Go and Debian's grpc-go sources (golang-go golang-google-grpc-dev
// golang-google-protobuf-dev): the load generator is built in GOPATH mode. The
// server and the load generator each hold a socket per agent, so each needs an
// open-file limit above BENCH_FLEET (+ margin); children are started with their
// soft limit raised to the hard one.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createPrivateKey, createPublicKey, randomBytes, randomUUID } from "node:crypto";
import { appendFileSync, closeSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { databaseForTests } from "../../bmdb/bmdb.js";
import { openBmdb } from "../../bmdb/index.js";
import { SERVER_NODE_FLAGS } from "../../cmd/server-node-flags.js";
import { loadOrCreateDevCerts } from "../../lib/certs.js";
import { openSharedPort } from "../../server/reuseport.js";
import { DiskProbe, syncPercentiles } from "./disk-probe.js";
import { insertFillerAgents, insertFleetAgents, settleBulkLoad } from "./populate-fleet.js";

process.noDeprecation = true;

// ---------------------------------------------------------------- settings

const num = (name: string, dflt: number): number => {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v}: want a non-negative number`);
  return n;
};
const list = (name: string, all: string[]): Set<string> => {
  const v = process.env[name];
  if (!v) return new Set(all);
  const items = v.split(",").map((s) => s.trim()).filter(Boolean);
  const bad = items.filter((i) => !all.includes(i));
  if (bad.length) throw new Error(`${name}: unknown ${bad.join(", ")} (choose from ${all.join(",")})`);
  return new Set(items);
};

const S = {
  only: list("BENCH_ONLY", ["ceiling", "pglite", "postgres"]),
  scenarios: list("BENCH_SCENARIOS", ["b2b", "fleet", "reconnect", "overload", "large"]),
  agents: num("BENCH_AGENTS", 200),
  seconds: num("BENCH_SECONDS", 10),
  b2bSlices: Math.max(1, num("BENCH_B2B_SLICES", 8)),
  b2bSliceSeconds: Math.max(0.5, num("BENCH_B2B_SLICE_SECONDS", 2.5)),
  fleet: num("BENCH_FLEET", 10_000),
  rate: num("BENCH_RATE", 1000),
  steadySeconds: num("BENCH_STEADY_SECONDS", 60),
  budget: num("BENCH_BUDGET", 1000),
  overloadSeconds: num("BENCH_OVERLOAD_SECONDS", 30),
  large: num("BENCH_LARGE", 1) !== 0,
  largeMachines: num("BENCH_LARGE_MACHINES", 1_000_000),
  pgUrl: process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test",
  deadlineMs: num("BENCH_DEADLINE_MS", 5000),
  giveupSeconds: num("BENCH_GIVEUP_SECONDS", 60),
  dialConcurrency: num("BENCH_DIAL_CONCURRENCY", 1000),
  tlsResume: num("BENCH_TLS_RESUME", 0) !== 0,
  newFlags: num("BENCH_NEW_FLAGS", 1) !== 0,
  holdSocket: num("BENCH_HOLD_SOCKET", 0) !== 0,
  serverArgs: (process.env.BENCH_SERVER_ARGS ?? "").split(/\s+/).filter(Boolean),
  json: process.env.BENCH_JSON,
  /** A file that gets every server's stdout lines that are not JSON (e.g. --trace-gc). */
  serverOutput: process.env.BENCH_SERVER_OUTPUT,
};
if (!S.scenarios.has("large")) S.large = false;

// Node flags for every server process: bmaas-server's own (its shebang's, the
// ceiling gets them too), then BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
const NODE_ARGS = [...SERVER_NODE_FLAGS, ...(process.env.BENCH_NODE_ARGS ?? "").split(/\s+/).filter(Boolean)];

// Socket activation's variables for a server given the held socket as fd 3 (LISTEN_PID: set by spawnWithFds).
const HELD_SOCKET_ENV = { LISTEN_FDS: "1", LISTEN_FDNAMES: "agent" };

const REPO = resolve(import.meta.dirname, "../../..");
const DIST = resolve(import.meta.dirname, "../..");
const SERVER_JS = join(DIST, "cmd", "bmaas-server.js");
const CEILING_JS = join(DIST, "test", "bench", "bench-server.js");
const LOADGEN_SRC = join(REPO, "test", "bench", "loadgen");
const GOPATH = process.env.BMAAS_GOPATH ?? "/usr/share/gocode";

const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const out = (s: string) => process.stdout.write(s + "\n");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- cleanup

const cleanups: (() => Promise<void> | void)[] = [];
const children = new Set<ChildProcess>();
async function cleanup(): Promise<void> {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const f of cleanups.splice(0).reverse()) {
    try {
      await f();
    } catch (e) {
      log(`cleanup: ${(e as Error).message}`);
    }
  }
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------- file descriptors

function fdLimits(): { soft: number; hard: number } {
  const get = (flag: string) => {
    const v = execFileSync("bash", ["-c", `ulimit ${flag}`], { encoding: "utf8" }).trim();
    return v === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(v);
  };
  return { soft: get("-Sn"), hard: get("-Hn") };
}

/** Runs cmd with its open-file soft limit raised to `nofile` (≤ the hard limit). */
function spawnWithFds(nofile: number, cmd: string, args: string[], stdio: ("pipe" | "ignore" | "ipc" | number)[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  // LISTEN_PID is the pid that exec keeps (socket activation: held sockets are meant for that process alone).
  const script = 'ulimit -n "$0" && { [ -z "$LISTEN_FDS" ] || export LISTEN_PID=$$; } && exec "$@"';
  const child = spawn("bash", ["-c", script, String(nofile), cmd, ...args], { stdio, cwd: REPO, env });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

// ---------------------------------------------------------------- load generator

function buildLoadgen(work: string): string {
  const binary = join(work, "loadgen");
  try {
    execFileSync("go", ["build", "-o", binary, "."], {
      cwd: LOADGEN_SRC,
      env: { ...process.env, GO111MODULE: "off", GOPATH, GOCACHE: join(tmpdir(), "bmaas-bench-gocache"), GOFLAGS: "" },
      stdio: "pipe",
    });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(
      `cannot build the load generator (needs golang-go golang-google-grpc-dev golang-google-protobuf-dev): ${err.stderr?.toString() || err.message}`,
    );
  }
  return binary;
}

interface Latency {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}
interface Phase {
  seconds: number;
  calls: number;
  ok: number;
  codes: Record<string, number>;
  ok_per_s: number;
  calls_per_s: number;
  latency_ok_ms: Latency;
  latency_failed_ms: Latency;
  latency_failed_by_code_ms: Record<string, Latency>;
  pushback: number;
  pushback_ms: Latency;
  agents_served: number;
  all_served_s?: number;
  agent_served_ms?: Latency;
  failed_for_good?: number;
  last_served_unix_ms?: number;
  start_unix_ms: number;
  /** By the second calls ended in: OK calls and their p99 ms. */
  per_second?: { ok: number; p99: number }[];
}
interface LoadgenOutput {
  mode: string;
  agents: number;
  prepare_s: number;
  connect: Phase;
  run?: Phase;
  reconnect?: Phase;
  agents_served_ever: number;
  pushback_total: number;
}
type LoadgenEvent = { event: string; unix_ms: number } & Record<string, unknown>;

/**
 * CPU seconds a process has used so far (user + system, all its threads), 0
 * once gone. Per connection, it is steadier than the wall time of connect
 * and storm, which move with this machine's speed and with the other process.
 */
function cpuSecondsOf(pid: number | undefined): number {
  try {
    // Fields after the command name, which may hold spaces: state is the 3rd, utime the 14th, stime the 15th.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
// USER_HZ: 100 on every Linux architecture the bench runs on.
const CLOCK_TICKS = 100;

interface Loadgen {
  child: ChildProcess;
  done: Promise<LoadgenOutput>;
}

let loadgenBinary = "";
/** The disk's own sync latency through the whole run (./disk-probe.ts). */
let disk: DiskProbe | undefined;
/** A sync slower than this is a stall worth naming beside the phase's figures. */
const DISK_STALL_MS = 50;
const DISK_PROBE_PERIOD_MS = 20;
const DISK_PROBE_TEXT = `fdatasync of 4 KiB every ${DISK_PROBE_PERIOD_MS} ms in the bench's directory`;
let agentsFile = "";
let nofile = 0;

function startLoadgen(address: string, mode: string, args: string[], onEvent: (e: LoadgenEvent, lg: ChildProcess) => void): Loadgen {
  const all = [
    "-addr",
    address,
    "-agents",
    agentsFile,
    "-mode",
    mode,
    "-deadline",
    `${S.deadlineMs}ms`,
    "-giveup",
    `${S.giveupSeconds}s`,
    "-dial-concurrency",
    String(S.dialConcurrency),
    ...(S.tlsResume ? ["-tls-resume"] : []),
    ...args,
  ];
  // One process plays 10,000 agents, so its garbage collector is one that a
  // real fleet does not have, and it competes with the server for the same
  // 2 cores. GOGC=1000 (Go's default is 100) collects a tenth as often: in
  // the overload scenario (2,000/s) the OK calls' p99 stayed under 60 ms in
  // 5 of 6 runs against 5 of 14 with the default (91-380 ms in the others).
  // An explicit GOGC in the environment wins.
  const child = spawnWithFds(nofile, loadgenBinary, all, ["pipe", "pipe", "pipe"], { ...process.env, GOGC: process.env.GOGC ?? "1000" });
  let stdout = "";
  const stderr: string[] = [];
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  createInterface({ input: child.stderr! }).on("line", (line) => {
    if (line.startsWith("{")) {
      try {
        const e = JSON.parse(line) as LoadgenEvent;
        if (e.event) {
          onEvent(e, child);
          return;
        }
      } catch {
        // not an event
      }
    }
    stderr.push(line);
    if (stderr.length > 50) stderr.shift();
  });
  const done = new Promise<LoadgenOutput>((resolveDone, reject) => {
    child.once("exit", (code, signal) => {
      const text = stdout.trim();
      if (code === 0 && text) {
        try {
          resolveDone(JSON.parse(text) as LoadgenOutput);
          return;
        } catch {
          // fall through
        }
      }
      reject(new Error(`load generator exited with ${signal ?? code}:\n${stderr.join("\n")}`));
    });
  });
  return { child, done };
}

// ---------------------------------------------------------------- agents and databases

interface Fleet {
  ids: string[];
  keysHex: string[];
}

/** DER of an Ed25519 PKCS#8 private key up to its 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

function makeFleet(n: number, file: string): Fleet {
  const ids: string[] = [];
  const keysHex: string[] = [];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    // A random seed and its public key, without generateKeyPairSync: on
    // Node 20, exporting thousands of its keys as JWK sometimes deadlocked the
    // bench at start (a GC inside ExportJWK ran a KeyGenJob destructor that
    // waits for the mutex ExportJWK holds; seen twice in gdb).
    const seed = randomBytes(32);
    const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
    const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
    const id = randomUUID();
    ids.push(id);
    keysHex.push(spki.subarray(spki.length - 32).toString("hex"));
    lines.push(`${id} ${seed.toString("hex")}`);
  }
  writeFileSync(file, lines.join("\n") + "\n");
  return { ids, keysHex };
}

/**
 * Creates the schema (bmdb's migrations) and registers the fleet's machines
 * with their agents' keys; with filler > 0, first that many more machines with
 * agents and recent heartbeats, as a large fleet has.
 */
async function registerMachines(url: string, fleet: Fleet, filler = 0): Promise<void> {
  const t0 = performance.now();
  const bmdb = await openBmdb(url);
  try {
    const db = databaseForTests(bmdb);
    await insertFillerAgents(db, filler);
    await insertFleetAgents(db, fleet.ids, fleet.keysHex);
    await settleBulkLoad(db);
  } finally {
    await bmdb.close();
  }
  log(`registered ${fleet.ids.length + filler} machines in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

async function createPostgresDatabase(): Promise<string> {
  const name = `bmaas_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: S.pgUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: S.pgUrl });
    await c.connect();
    try {
      await c.query(`drop database if exists ${name} with (force)`);
    } finally {
      await c.end();
    }
  });
  const u = new URL(S.pgUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

// ---------------------------------------------------------------- server processes

interface RssSample {
  t: number;
  rss: number;
}

/** A server's stdout line that is not a log line (e.g. --trace-gc), kept in BENCH_SERVER_OUTPUT if set. */
function keepServerOutput(label: string, line: string): void {
  if (S.serverOutput) appendFileSync(S.serverOutput, `${label} ${Date.now()}: ${line}\n`);
}

/** The fields of the server's "stopped" log line. */
type StoppedLog = { listenersMs?: number; databaseMs?: number };

class ServerProcess {
  readonly samples: RssSample[] = [];
  readonly stderr: string[] = [];
  #sampler: NodeJS.Timeout | undefined;
  exitedAt = 0;
  readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly label: string,
  ) {
    this.exited = new Promise((r) =>
      child.once("exit", () => {
        this.exitedAt = Date.now();
        r();
      }),
    );
    child.stderr?.on("data", (d: Buffer) => {
      this.stderr.push(d.toString());
      if (this.stderr.length > 100) this.stderr.shift();
    });
  }

  publicAddress = "";
  metricsAddress = "";
  /** When every listener was up (and the database open). */
  listeningAt = 0;
  /** The server's own account of its shutdown: listeners and connections, then the database. */
  stoppedLog: StoppedLog | undefined;
  /** When the agent listener opened; 0 for a server that does not say. */
  agentsListeningAt = 0;

  get pid(): number {
    return this.child.pid!;
  }

  /** The real bmaas-server binary on the given database. */
  static async bmaas(label: string, url: string, certsDir: string, publicListen: string, extra: string[], heldFd?: number): Promise<ServerProcess> {
    const args = [
      ...NODE_ARGS,
      SERVER_JS,
      "--dev-certs",
      certsDir,
      "--database-url",
      url,
      "--public-listen",
      publicListen,
      "--internal-listen",
      "127.0.0.1:0",
      "--metrics-listen",
      "127.0.0.1:0",
      // Two servers run at once (the large fleet's back to back in turns with the 10,000's): no fixed port.
      "--web-listen",
      "127.0.0.1:0",
      "--log-level",
      "info",
      ...(S.newFlags ? ["--agent-max-connections-per-ip", "100000", "--agent-max-connections", "100000"] : []),
      ...extra,
      ...S.serverArgs,
    ];
    const child = spawnWithFds(nofile, process.execPath, args, ["ignore", "pipe", "pipe", ...(heldFd === undefined ? [] : [heldFd])], {
      ...process.env,
      ...(heldFd !== undefined && HELD_SOCKET_ENV),
    });
    const p = new ServerProcess(child, label);
    const listening = new Promise<void>((r) => {
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (!line.startsWith("{")) return keepServerOutput(label, line);
        try {
          const m = JSON.parse(line) as { msg?: string; public?: string; metrics?: string } & StoppedLog;
          // The agent port opens before the database is ready (server.ts):
          // agents can connect from then on.
          if (m.msg === "agent listener open" && !p.agentsListeningAt) p.agentsListeningAt = Date.now();
          if (m.msg === "stopped") p.stoppedLog = m;
          if (m.msg === "listening" && m.public) {
            p.publicAddress = m.public;
            p.metricsAddress = m.metrics ?? "";
            p.listeningAt = Date.now();
            r();
          }
        } catch {
          // a log line we do not need
        }
      });
    });
    await p.#ready(listening);
    return p;
  }

  /** The empty-handler ceiling: test/bench/bench-server.js empty '<pki json>', on `port` (0: any). */
  static async ceiling(pki: { cert: string; key: string; ca: string }, port = 0, heldFd?: number): Promise<ServerProcess> {
    const stdio: ("pipe" | "ignore" | "ipc" | number)[] = heldFd === undefined ? ["ignore", "pipe", "pipe", "ipc"] : ["ignore", "pipe", "pipe", heldFd, "ipc"];
    const child = spawnWithFds(nofile, process.execPath, [...NODE_ARGS, CEILING_JS, "empty", JSON.stringify(pki)], stdio, {
      ...process.env,
      BENCH_CEILING_PORT: String(port),
      ...(heldFd !== undefined && HELD_SOCKET_ENV),
    });
    const p = new ServerProcess(child, "ceiling");
    createInterface({ input: child.stdout! }).on("line", (line) => keepServerOutput("ceiling", line));
    const ready = new Promise<void>((r) => {
      child.on("message", (m: { kind?: string; address?: string }) => {
        if (m.kind === "ready" && m.address) {
          p.publicAddress = m.address;
          p.listeningAt = Date.now();
          r();
        }
      });
    });
    await p.#ready(ready);
    return p;
  }

  async #ready(ready: Promise<void>): Promise<void> {
    const failed = this.exited.then(() => {
      throw new Error(`${this.label} server exited before it was ready:\n${this.stderr.join("").trim()}`);
    });
    // Cleared once settled: a pending 180 s timer per server kept the bench
    // alive for minutes after it had printed its summary.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.label} server not ready after 180 s:\n${this.stderr.join("").trim()}`)), 180_000);
    });
    try {
      await Promise.race([ready, failed, timeout]);
    } finally {
      clearTimeout(timer);
    }
    this.#sampler = setInterval(() => {
      const rss = this.status("VmRSS");
      if (rss) this.samples.push({ t: Date.now(), rss });
    }, 250);
  }

  /** A field of /proc/PID/status in bytes (VmRSS, VmHWM), 0 once gone. */
  status(field: string): number {
    try {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      return m ? Number(m[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  }

  cpuSeconds(): number {
    return cpuSecondsOf(this.pid);
  }

  maxRss(from: number, to: number): number {
    return Math.max(0, ...this.samples.filter((s) => s.t >= from && s.t <= to).map((s) => s.rss));
  }

  /** Counter values from /metrics, keyed by name{labels}. */
  async metrics(): Promise<Map<string, number>> {
    const m = new Map<string, number>();
    if (!this.metricsAddress) return m;
    try {
      const text = await (await fetch(`http://${this.metricsAddress}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
      for (const line of text.split("\n")) {
        if (!line || line.startsWith("#")) continue;
        const i = line.lastIndexOf(" ");
        m.set(line.slice(0, i), Number(line.slice(i + 1)));
      }
    } catch (e) {
      log(`${this.label}: metrics unavailable (${(e as Error).message})`);
    }
    return m;
  }

  /**
   * Resolves once the server's start-up work is done: its first count of the
   * fleet (bmaas_fleet_stats_age_seconds no longer -1), a scan of every
   * machine that takes ~0.8 s of a core with 1,000,000 of them. Back to back
   * measures the heartbeat path of a running server, not its start-up (the
   * connect and reconnect scenarios time that). A server without the gauge
   * (the ceiling) is settled at once.
   */
  async settled(timeoutMs = 60_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const age = (await this.metrics()).get("bmaas_fleet_stats_age_seconds");
      if (age === undefined || age >= 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    log(`${this.label}: no fleet count ${timeoutMs / 1000} s after start; measuring anyway`);
  }

  /** Stops the server (SIGTERM, SIGKILL after killAfterMs); the ms it took to exit. */
  #stopping: Promise<number> | undefined;
  stop(killAfterMs = 60_000): Promise<number> {
    return (this.#stopping ??= this.#stop(killAfterMs));
  }

  async #stop(killAfterMs: number): Promise<number> {
    clearInterval(this.#sampler);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return 0;
    const t0 = Date.now();
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => {
      log(`${this.label}: still running ${killAfterMs / 1000} s after SIGTERM, killing it`);
      this.child.kill("SIGKILL");
    }, killAfterMs);
    await this.exited;
    clearTimeout(timer);
    return Date.now() - t0;
  }
}

interface Counters {
  txExecuted: number;
  txRetried: number;
  txFailed: number;
  txRejected: number;
  serverCounted: Record<string, number>;
  /** Group-commit batches written meanwhile: how many, mean size, and their time in the database. */
  batches: number;
  batchMeanSize: number;
  batchMeanMs: number;
  /** 99th percentile, interpolated within its histogram bucket (histogramQuantileMs). */
  batchP99Ms: number;
  /**
   * p99 of the OK heartbeats as the server timed them (stream arrival to
   * answer written): beside the load generator's p99 it tells time spent in
   * the server's handler from time outside it (socket buffers, a stalled
   * event loop before the stream is seen, the load generator itself).
   */
  serverOkP99Ms: number;
}

/**
 * Quantile q (ms) of a histogram's delta, interpolated within its bucket as
 * Prometheus' histogram_quantile does; only the series carrying every one of
 * `labels` (e.g. 'code="OK"') count. Past the last finite bucket: its bound.
 */
function histogramQuantileMs(d: (k: string) => number, keys: Iterable<string>, name: string, q: number, labels: readonly string[] = []): number {
  // Series that differ in other labels are summed bucket by bucket.
  const byBound = new Map<number, number>();
  for (const k of keys) {
    const m = new RegExp(`^${name}_bucket\\{(.*)\\}$`).exec(k);
    if (!m) continue;
    const set = m[1]!.split(",");
    const le = set.find((l) => l.startsWith("le="))?.slice(4, -1);
    if (le === undefined || !labels.every((l) => set.includes(l))) continue;
    const bound = le === "+Inf" ? Infinity : Number(le);
    byBound.set(bound, (byBound.get(bound) ?? 0) + d(k));
  }
  const buckets = [...byBound].sort((a, b) => a[0] - b[0]);
  const total = buckets.at(-1)?.[1] ?? 0;
  const i = buckets.findIndex(([, n]) => n >= q * total);
  if (total === 0 || i < 0) return 0;
  // Linear within the bucket, as Prometheus' histogram_quantile does.
  const [upper, count] = buckets[i]!;
  const [lower, below] = i > 0 ? buckets[i - 1]! : [0, 0];
  if (upper === Infinity) return lower * 1000;
  return (lower + ((upper - lower) * (q * total - below)) / Math.max(1, count - below)) * 1000;
}

function counters(before: Map<string, number>, after: Map<string, number>): Counters | undefined {
  if (after.size === 0) return undefined;
  const d = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  const serverCounted: Record<string, number> = {};
  for (const k of after.keys()) {
    const m = /^bmaas_agent_heartbeats_total\{code="([A-Z_]+)"\}$/.exec(k);
    if (m && d(k) > 0) serverCounted[m[1]!] = d(k);
  }
  return {
    txExecuted: d("bmdb_transaction_executed"),
    txRetried: d("bmdb_transaction_retried"),
    txFailed: d("bmdb_transaction_failed"),
    txRejected: d("bmdb_transaction_rejected"),
    serverCounted,
    batches: d("bmaas_heartbeat_batch_size_count"),
    batchMeanSize: d("bmaas_heartbeat_batch_size_sum") / Math.max(1, d("bmaas_heartbeat_batch_size_count")),
    batchMeanMs: (1000 * d("bmaas_heartbeat_batch_duration_seconds_sum")) / Math.max(1, d("bmaas_heartbeat_batch_duration_seconds_count")),
    batchP99Ms: histogramQuantileMs(d, after.keys(), "bmaas_heartbeat_batch_duration_seconds", 0.99),
    serverOkP99Ms: histogramQuantileMs(d, after.keys(), "bmaas_rpc_duration_seconds", 0.99, ['method="Heartbeat"', 'code="OK"']),
  };
}

// ---------------------------------------------------------------- targets and scenarios

interface Target {
  key: "ceiling" | "pglite" | "postgres";
  label: string;
  /** Starts a server (on the given port, 0 for any; or on a socket the bench holds, as fd 3) with more flags. */
  start(port: number, extra: string[], heldFd?: number): Promise<ServerProcess>;
}

interface Slice {
  ok: number;
  seconds: number;
}

interface B2bResult {
  out: LoadgenOutput;
  /** Every call of the run (of all its slices when sliced). */
  run: Phase;
  counters?: Counters;
  rssMax: number;
  hwm: number;
  /** What was counted: the whole run, or each slice taken in turns with the ceiling (BENCH_B2B_SLICES). */
  slices: Slice[];
}

/** Back to back's heartbeats/s: OK calls counted over the time counted. */
const b2bRate = (b: B2bResult): number => sliceRate(b.slices);

function sliceRate(slices: readonly Slice[]): number {
  const seconds = slices.reduce((a, x) => a + x.seconds, 0);
  return seconds > 0 ? slices.reduce((a, x) => a + x.ok, 0) / seconds : 0;
}

/** The ratio of each slice of b to the reference's slice taken next to it: "min–max, median m". */
function pairRatiosText(b: B2bResult, reference: B2bResult): string {
  const ratios = b.slices
    .map((x, i) => (reference.slices[i] ? sliceRate([x]) / sliceRate([reference.slices[i]!]) : NaN))
    .filter((x) => Number.isFinite(x))
    .sort((a, c) => a - c);
  if (ratios.length === 0) return "";
  const median = ratios[Math.floor(ratios.length / 2)]!;
  return `each slice against the one next to it ${ratios[0]!.toFixed(2)}–${ratios[ratios.length - 1]!.toFixed(2)}×, median ${median.toFixed(2)}×`;
}
interface FleetResult {
  out: LoadgenOutput;
  steady: Phase;
  counters?: Counters;
  rssSteadyMax: number;
  rssAfterConnect: number;
  hwm: number;
  /** CPU seconds while the fleet connected: the server's (from its start), the load generator's (from its agents being ready). */
  connectCpu: { server: number; loadgen: number };
  /** The server's counters from its start until the fleet had connected (its first heartbeats' batches). */
  connectCounters?: Counters;
  reconnect?: {
    phase: Phase;
    /** CPU seconds of the new server from its start until the last agent was served again (and the load generator reported). */
    serverCpu: number;
    /** From the new server's agent listener opening (older servers: from "listening"). */
    fromListeningS?: number;
    fromExitS?: number;
    /** How long after the agent listener opened the database was ready. */
    databaseReadyS: number;
    shutdownMs: number;
    restartMs: number;
    counters?: Counters;
  };
}
interface TargetResults {
  target: string;
  b2b?: B2bResult;
  /** The ceiling's back to back in turns with this target's: the reference of its ratio. */
  b2bCeilingBeside?: B2bResult;
  /** The ceiling's connect and reconnect storm right after this target's (5 s of steady load between). */
  fleetCeilingBeside?: FleetResult;
  fleet?: FleetResult;
  overload?: FleetResult;
  largeB2b?: B2bResult;
  /** The 10,000-machine database's back to back in turns with largeB2b: the reference of its ratios. */
  largeB2bBeside?: B2bResult;
  largeFleet?: FleetResult;
  /** The 10,000-machine database's fleet in turns with largeFleet's steady load (each 5 s slices). */
  largeFleetBeside?: FleetResult;
  errors: string[];
}

async function runB2b(target: Target, start: () => Promise<ServerProcess>): Promise<B2bResult> {
  const server = await start();
  try {
    await server.settled();
    let before = new Map<string, number>();
    let after: Promise<Map<string, number>> | undefined;
    let connectedAt = 0;
    let rssMax = 0;
    let hwm = 0;
    const runDone = () => {
      rssMax = server.maxRss(connectedAt, Date.now());
      hwm = server.status("VmHWM");
      after = server.metrics();
    };
    const lg = startLoadgen(server.publicAddress, "b2b", ["-n", String(S.agents), "-duration", `${S.seconds}s`], (e) => {
      if (e.event === "connected") {
        connectedAt = Date.now();
        void server.metrics().then((m) => (before = m));
      } else if (e.event === "run-done") {
        runDone();
      }
    });
    const out = await lg.done;
    if (!after) runDone();
    return { out, run: out.run!, counters: counters(before, await after!), rssMax, hwm, slices: [{ ok: out.run!.ok, seconds: out.run!.seconds }] };
  } finally {
    await server.stop();
    log(`${target.label}: b2b done`);
  }
}

/** The open loop's slices in turns (the large fleet against the 10,000-machine database). */
const FLEET_SLICE_SECONDS = 5;
/** Both sides connected, the wait before the first slice. */
const IN_TURNS_SETTLE_MS = 5_000;

/** What one side of a run in turns measured, from its connect phase on. */
interface SlicedRun {
  out: LoadgenOutput;
  slices: Slice[];
  /** The server's counters while the slices ran, and from its start until its agents had connected. */
  counters?: Counters;
  connectCounters?: Counters;
  rssAfterConnect: number;
  rssMax: number;
  hwm: number;
  /** CPU seconds while the agents connected: the server's (from its start), the load generator's (from its agents being ready). */
  connectCpu: { server: number; loadgen: number };
}

/** One side of a run in turns: a server with its own load generator (-sliced), connected and waiting. */
interface SlicedSide {
  /** Runs one slice of `seconds`; resolves with what it counted. */
  slice(seconds: number): Promise<Slice>;
  /** Ends the run phase; resolves with the side's result. */
  end(): Promise<SlicedRun>;
  /** Stops the load generator if it still runs (the run in turns failed). */
  kill(): void;
}

async function slicedSide(target: Target, server: ServerProcess, mode: "b2b" | "open", args: string[]): Promise<SlicedSide> {
  let before = new Map<string, number>();
  let connectedAt = 0;
  let rssAfterConnect = 0;
  const serverCpuAtStart = server.cpuSeconds();
  let loadgenCpuAtReady = 0;
  const connectCpu = { server: 0, loadgen: 0 };
  let connected!: () => void;
  const ready = new Promise<void>((resolve) => (connected = resolve));
  const sliceWaiters: ((s: Slice) => void)[] = [];
  const slices: Slice[] = [];
  const lg = startLoadgen(server.publicAddress, mode, [...args, "-sliced"], (e, child) => {
    if (e.event === "prepared") loadgenCpuAtReady = cpuSecondsOf(child.pid);
    if (e.event === "connected") {
      connectCpu.server = server.cpuSeconds() - serverCpuAtStart;
      connectCpu.loadgen = cpuSecondsOf(child.pid) - loadgenCpuAtReady;
      connectedAt = Date.now();
      rssAfterConnect = server.status("VmRSS");
      log(`${target.label}: connected (${String(e.failed_for_good)} failed for good)`);
      void server.metrics().then((m) => ((before = m), connected()));
    } else if (e.event === "slice") {
      const s = { ok: Number(e.ok), seconds: Number(e.seconds) };
      slices.push(s);
      sliceWaiters.shift()?.(s);
    }
  });
  await Promise.race([ready, lg.done]);
  const send = (line: string) => lg.child.stdin!.write(`${line}\n`);
  return {
    slice: async (seconds) => {
      const counted = new Promise<Slice>((resolve) => sliceWaiters.push(resolve));
      send("go");
      await sleep(seconds * 1000);
      send("pause");
      return Promise.race([counted, lg.done.then(() => Promise.reject(new Error("the load generator ended during a slice")))]);
    },
    end: async () => {
      const rssMax = server.maxRss(connectedAt, Date.now());
      const hwm = server.status("VmHWM");
      const after = await server.metrics();
      send("end");
      const out = await lg.done;
      return { out, slices, counters: counters(before, after), connectCounters: counters(new Map(), before), rssAfterConnect, rssMax, hwm, connectCpu };
    },
    kill: () => {
      if (lg.child.exitCode === null && lg.child.signalCode === null) lg.child.kill("SIGKILL");
    },
  };
}

/**
 * Runs target and a reference in turns: both servers up, each with its own
 * load generator (mode, args), `slices` slices of `seconds` each in the order
 * T R R T T R R T … (a drift that is linear over two slices weighs on both
 * alike), the reference's slice i next to the target's slice i. The sides
 * connect one after the other, each while the other is idle.
 */
async function runInTurns(
  target: Target,
  reference: Target,
  mode: "b2b" | "open",
  args: string[],
  slices: number,
  seconds: number,
): Promise<{ mine: SlicedRun; theirs: SlicedRun }> {
  const servers: ServerProcess[] = [];
  const sides: SlicedSide[] = [];
  try {
    servers.push(await target.start(0, []));
    servers.push(await reference.start(0, []));
    await Promise.all(servers.map((s) => s.settled()));
    const mine = await slicedSide(target, servers[0]!, mode, args);
    sides.push(mine);
    const theirs = await slicedSide(reference, servers[1]!, mode, args);
    sides.push(theirs);
    // The first slice (the target's) must not start while the second side's
    // connecting still costs: its server's and the load generator's garbage
    // collections right after 10,000 handshakes gave the target's first slice
    // seconds with a p99 of 30-70 ms where the rest had ~9.
    await sleep(IN_TURNS_SETTLE_MS);
    for (let i = 0; i < slices; i++) {
      const order = i % 2 === 0 ? [mine, theirs] : [theirs, mine];
      for (const side of order) await side.slice(seconds);
    }
    return { mine: await mine.end(), theirs: await theirs.end() };
  } finally {
    for (const side of sides) side.kill();
    await Promise.all(servers.map((s) => s.stop()));
    log(`${target.label}: ${mode} in turns with ${reference.label} done`);
  }
}

const asB2b = (r: SlicedRun): B2bResult => ({ out: r.out, run: r.out.run!, counters: r.counters, rssMax: r.rssMax, hwm: r.hwm, slices: r.slices });

/** Back to back (S.agents agents) on target and reference in turns: BENCH_B2B_SLICES of BENCH_B2B_SLICE_SECONDS. */
async function runB2bInTurns(target: Target, reference: Target): Promise<{ mine: B2bResult; theirs: B2bResult }> {
  const { mine, theirs } = await runInTurns(target, reference, "b2b", ["-n", String(S.agents)], S.b2bSlices, S.b2bSliceSeconds);
  return { mine: asB2b(mine), theirs: asB2b(theirs) };
}

const asFleet = (r: SlicedRun): FleetResult => ({
  out: r.out,
  steady: r.out.run!,
  counters: r.counters,
  connectCounters: r.connectCounters,
  rssSteadyMax: r.rssMax,
  rssAfterConnect: r.rssAfterConnect,
  hwm: r.hwm,
  connectCpu: r.connectCpu,
});

/** S.fleet agents offering `rate` open loop on target and reference in turns, `seconds` in all each, in slices of 5 s. */
async function runFleetInTurns(target: Target, reference: Target, rate: number, seconds: number): Promise<{ mine: FleetResult; theirs: FleetResult }> {
  const slices = Math.max(1, Math.round(seconds / FLEET_SLICE_SECONDS));
  // No warm-up: an open loop offers its rate from a slice's first moment, so every call counts.
  const args = ["-n", String(S.fleet), "-rate", String(rate), "-slice-warmup", "0s"];
  const { mine, theirs } = await runInTurns(target, reference, "open", args, slices, FLEET_SLICE_SECONDS);
  return { mine: asFleet(mine), theirs: asFleet(theirs) };
}

/** Connects the fleet, offers `rate` open loop for `seconds`; optionally then restarts the server and times the reconnection. */
async function runFleet(
  target: Target,
  start: (port: number, heldFd?: number) => Promise<ServerProcess>,
  rate: number,
  seconds: number,
  reconnect: boolean,
): Promise<FleetResult> {
  // BENCH_HOLD_SOCKET: the bench holds the agent port's socket across the
  // restart and hands it to each server, as systemd's socket activation does.
  const held = reconnect && S.holdSocket ? holdAgentSocket() : undefined;
  try {
    return await runFleetOn(target, (port) => start(port, held?.fd), rate, seconds, reconnect, held?.port ?? 0);
  } finally {
    if (held) closeSync(held.fd);
  }
}

/** A socket bound to a free loopback port, not listening: the first server's listen() opens it, and it stays open in the bench between servers. */
function holdAgentSocket(): { fd: number; port: number } {
  const { fds, port, error } = openSharedPort({ host: "127.0.0.1", port: 0 }, 1, "the held agent socket");
  if (!fds) throw new Error(`BENCH_HOLD_SOCKET needs the reuseport addon: ${error}`);
  return { fd: fds[0]!, port: port! };
}

async function runFleetOn(
  target: Target,
  start: (port: number) => Promise<ServerProcess>,
  rate: number,
  seconds: number,
  reconnect: boolean,
  firstPort: number,
): Promise<FleetResult> {
  const server = await start(firstPort);
  const port = Number(server.publicAddress.slice(server.publicAddress.lastIndexOf(":") + 1));
  let before = new Map<string, number>();
  let after: Promise<Map<string, number>> | undefined;
  let connectedAt = 0;
  let rssAfterConnect = 0;
  let rssSteadyMax = 0;
  let hwm = 0;
  let restart: Promise<{ shutdownMs: number; restartMs: number; server: ServerProcess }> | undefined;
  const serverCpuAtStart = server.cpuSeconds();
  let loadgenCpuAtReady = 0;
  const connectCpu = { server: 0, loadgen: 0 };
  const steadyDone = () => {
    const now = Date.now();
    rssSteadyMax = server.maxRss(connectedAt, now);
    hwm = server.status("VmHWM");
    after = server.metrics();
  };
  const lg = startLoadgen(
    server.publicAddress,
    "open",
    ["-n", String(S.fleet), "-rate", String(rate), "-duration", `${seconds}s`, ...(reconnect ? ["-reconnect"] : [])],
    (e, child) => {
      if (e.event === "prepared") loadgenCpuAtReady = cpuSecondsOf(child.pid);
      if (e.event === "connected") {
        connectCpu.server = server.cpuSeconds() - serverCpuAtStart;
        connectCpu.loadgen = cpuSecondsOf(child.pid) - loadgenCpuAtReady;
        connectedAt = Date.now();
        rssAfterConnect = server.status("VmRSS");
        log(`${target.label}: fleet connected (${String(e.failed_for_good)} failed for good); ${seconds} s at ${rate}/s`);
        void server.metrics().then((m) => (before = m));
      } else if (e.event === "run-done") {
        steadyDone();
        if (!reconnect) return;
        // Scrape first, then restart. The agents start their storm when told
        // the old server is gone, and hammer the port while the new one starts.
        restart = (async () => {
          await after;
          const shutdownMs = await server.stop();
          const split = server.stoppedLog ? ` (listeners ${server.stoppedLog.listenersMs} ms, database ${server.stoppedLog.databaseMs} ms)` : "";
          log(`${target.label}: server stopped in ${(shutdownMs / 1000).toFixed(1)} s${split}; restarting on port ${port}`);
          child.stdin!.write("go\n");
          const t0 = Date.now();
          const next = await start(port);
          return { shutdownMs, restartMs: Date.now() - t0, server: next };
        })();
        restart.catch((e: Error) => {
          log(`${target.label}: restart failed: ${e.message}`);
          child.kill("SIGKILL");
        });
      }
    },
  );
  try {
    const out = await lg.done;
    const storming = restart?.then((r) => r.server.cpuSeconds());
    if (!after) steadyDone();
    const result: FleetResult = {
      connectCpu,
      connectCounters: counters(new Map(), before),
      out,
      steady: out.run!,
      counters: counters(before, await after!),
      rssSteadyMax,
      rssAfterConnect,
      hwm,
    };
    if (restart && out.reconnect) {
      const r = await restart;
      const last = out.reconnect.last_served_unix_ms;
      const allServed = out.reconnect.failed_for_good === 0 && last !== undefined;
      result.reconnect = {
        phase: out.reconnect,
        fromListeningS: allServed ? Math.max(0, last - (r.server.agentsListeningAt || r.server.listeningAt)) / 1000 : undefined,
        databaseReadyS: (r.server.listeningAt - (r.server.agentsListeningAt || r.server.listeningAt)) / 1000,
        fromExitS: allServed ? out.reconnect.all_served_s : undefined,
        shutdownMs: r.shutdownMs,
        restartMs: r.restartMs,
        serverCpu: (await storming) ?? 0,
        counters: counters(new Map(), await r.server.metrics()),
      };
    }
    return result;
  } finally {
    await server.stop();
    if (restart) await restart.then((r) => r.server.stop()).catch(() => {});
    log(`${target.label}: fleet done`);
  }
}

// ---------------------------------------------------------------- printing

/** "server CPU 2.31 ms per agent (load generator 1.10 ms)": what one connection cost each side. */
const cpuPerAgent = (serverSeconds: number, what: string, loadgenSeconds?: number): string =>
  serverSeconds > 0
    ? `${what} CPU ${fmt((1000 * serverSeconds) / S.fleet, 2)} ms per agent` +
      (loadgenSeconds ? ` (load generator ${fmt((1000 * loadgenSeconds) / S.fleet, 2)} ms)` : "")
    : "";

const fmt = (v: number | undefined, digits = 0): string =>
  v === undefined || !Number.isFinite(v) ? "–" : v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const ms = (v: number | undefined) => (v === undefined ? "–" : v < 10 ? fmt(v, 2) : v < 100 ? fmt(v, 1) : fmt(v));
const mib = (b: number | undefined) => (b ? `${fmt(b / 2 ** 20)} MiB` : "–");
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || !b ? "–" : `${(a / b).toFixed(2)}×`);
/**
 * The seconds whose own p99 was over 100 ms: a whole-phase p99 of 60,000
 * calls is the 600th slowest, so one stalled second (a checkpoint, a pause
 * of either process) decides it as much as a slow tail spread over all.
 */
function stalledSeconds(p: Phase): string {
  const s = p.per_second ?? [];
  if (s.length === 0) return "";
  const stalled = s.map((x, i) => ({ i, ...x })).filter((x) => x.p99 > 100);
  return stalled.length === 0
    ? `no second with a p99 over 100 ms`
    : `${stalled.length} of ${s.length} seconds with a p99 over 100 ms (${stalled.map((x) => `s${x.i} ${ms(x.p99)}${diskStallNear(p, x.i)}`).join(", ")})`;
}

/**
 * " (disk sync 396 ms)" when the probe's slowest sync that started in second
 * i of the phase or the one before took over 50 ms: calls end in the second
 * after a stall that began late in its own.
 */
function diskStallNear(p: Phase, i: number): string {
  const slowest = disk?.slowestIn(p.start_unix_ms + (i - 1) * 1000, p.start_unix_ms + (i + 1) * 1000);
  return slowest !== undefined && slowest > DISK_STALL_MS ? ` (disk sync ${ms(slowest)} ms)` : "";
}

/** The probe's syncs over 50 ms that started during the phase, and its slowest sync then (undefined: no probe or no sync). */
function diskDuring(p: Phase): { stalls: number; slowest: number } | undefined {
  const from = p.start_unix_ms;
  const to = from + p.seconds * 1000;
  const slowest = disk?.slowestIn(from, to);
  return slowest === undefined ? undefined : { stalls: disk!.slowerThan(DISK_STALL_MS, from, to).length, slowest };
}

/** "3 (396)": syncs over 50 ms during the phase (the slowest, ms). */
function diskCell(p: Phase): string {
  const d = diskDuring(p);
  return d ? `${fmt(d.stalls)} (${ms(d.slowest)})` : "–";
}

/** "disk: 2 syncs over 50 ms, slowest 396 ms" (see ./disk-probe.ts). */
function diskText(p: Phase): string {
  const d = diskDuring(p);
  if (!d) return "";
  return d.stalls === 0 ? `disk: no sync over ${DISK_STALL_MS} ms (slowest ${ms(d.slowest)} ms)` : `disk: ${fmt(d.stalls)} syncs over ${DISK_STALL_MS} ms, slowest ${ms(d.slowest)} ms`;
}

function codes(p: Phase | undefined, withOk = false): string {
  if (!p) return "–";
  const e = Object.entries(p.codes).filter(([c]) => withOk || c !== "OK");
  return e.length ? e.map(([c, n]) => `${c} ${fmt(n)}`).join(", ") : "none";
}
const errorCount = (p: Phase | undefined) => (p ? Object.entries(p.codes).reduce((s, [c, n]) => (c === "OK" ? s : s + n), 0) : undefined);

function table(head: string[], rows: string[][], markdown: boolean): string {
  if (markdown) {
    const esc = (c: string) => c.replace(/\|/g, "\\|");
    return [head, head.map(() => "---"), ...rows].map((r) => `| ${r.map(esc).join(" | ")} |`).join("\n");
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

const notes = (...parts: string[]) => parts.filter(Boolean).join("; ");
const load = () => `load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`;

function txText(c: Counters | undefined): string {
  if (!c) return "";
  const counted = Object.entries(c.serverCounted)
    .map(([k, n]) => `${k} ${fmt(n)}`)
    .join(", ");
  const batches = c.batches > 0 ? `; ${fmt(c.batches)} batches of ${c.batchMeanSize.toFixed(1)} on average, ${c.batchMeanMs.toFixed(1)} ms mean in the database, p99 ${c.batchP99Ms.toFixed(1)} ms` : "";
  const serverP99 = c.serverOkP99Ms > 0 ? `; OK heartbeats' p99 as the server timed them ${c.serverOkP99Ms.toFixed(1)} ms` : "";
  return `tx ${fmt(c.txExecuted)} committed, ${fmt(c.txRetried)} retried, ${fmt(c.txFailed)} failed; server counted: ${counted || "none"}${batches}${serverP99}`;
}

/** The ceiling's back-to-back figure to compare r's with: the run right after r's when there is one. */
function ceilingB2b(r: TargetResults, ceiling: TargetResults | undefined): number | undefined {
  const b = r.b2bCeilingBeside ?? ceiling?.b2b;
  return b && b2bRate(b);
}

function printTarget(r: TargetResults, ceiling: TargetResults | undefined): void {
  const head = ["scenario", "OK/s", "× ceiling", "p50 ms", "p99 ms", "max ms", "errors by code"];
  const rows: string[][] = [];
  const cb = ceilingB2b(r, ceiling);
  const isCeiling = r === ceiling;
  /** inTurns: the run b's slices took turns with, and what it was. */
  const b2bRow = (label: string, b: B2bResult, ref: number | undefined, refLabel: string, inTurns?: { b: B2bResult | undefined; name: string }) => {
    rows.push([
      label,
      fmt(b2bRate(b)),
      isCeiling ? "1.00×" : ratio(b2bRate(b), ref) + refLabel,
      ms(b.run.latency_ok_ms.p50),
      ms(b.run.latency_ok_ms.p99),
      ms(b.run.latency_ok_ms.max),
      codes(b.run),
      notes(
        inTurns?.b
          ? `${b.slices.length} slices of ${S.b2bSliceSeconds} s in turns with ${inTurns.name} (${fmt(b2bRate(inTurns.b))}/s in its, p50/p99 ${ms(inTurns.b.run.latency_ok_ms.p50)}/${ms(inTurns.b.run.latency_ok_ms.p99)} ms); ${pairRatiosText(b, inTurns.b)}`
          : "",
        `connect ${fmt(b.out.connect.all_served_s, 1)} s`, `RSS max ${mib(b.rssMax)}`, diskText(b.run), txText(b.counters)),
    ]);
  };
  const fleetRows = (label: string, f: FleetResult, rate: number, refConnect: number | undefined) => {
    const c = f.out.connect;
    rows.push([
      `${label}: connect ${fmt(S.fleet)}`,
      "",
      isCeiling || refConnect === undefined || c.all_served_s === undefined ? "" : `${ratio(c.all_served_s, refConnect)} time`,
      ms(c.agent_served_ms?.p50),
      ms(c.agent_served_ms?.p99),
      ms(c.agent_served_ms?.max),
      codes(c),
      notes(
        c.failed_for_good ? `NOT ALL SERVED: ${fmt(c.failed_for_good)} failed for good after ${S.giveupSeconds} s` : `all served in ${fmt(c.all_served_s, 1)} s`,
        "p50/p99/max: when each agent was first served",
        `RSS then ${mib(f.rssAfterConnect)}`,
        cpuPerAgent(f.connectCpu.server, "server", f.connectCpu.loadgen),
        f.connectCounters?.batches ? `${fmt(f.connectCounters.batches)} batches of ${fmt(f.connectCounters.batchMeanSize, 1)}` : "",
      ),
    ]);
    rows.push([
      `${label}: steady ${fmt(rate)}/s offered`,
      fmt(f.steady.ok_per_s),
      "",
      ms(f.steady.latency_ok_ms.p50),
      ms(f.steady.latency_ok_ms.p99),
      ms(f.steady.latency_ok_ms.max),
      codes(f.steady),
      notes(
        `RSS steady max ${mib(f.rssSteadyMax)}, peak ${mib(f.hwm)}`,
        stalledSeconds(f.steady),
        diskText(f.steady),
        f.steady.latency_failed_ms.count ? `failed calls p99 ${ms(f.steady.latency_failed_ms.p99)} ms` : "",
        f.steady.pushback ? `pushback ${fmt(f.steady.pushback)}` : "",
        txText(f.counters),
      ),
    ]);
    if (f.reconnect) {
      const rc = f.reconnect;
      rows.push([
        `${label}: reconnect storm`,
        "",
        "",
        ms(rc.phase.agent_served_ms?.p50),
        ms(rc.phase.agent_served_ms?.p99),
        ms(rc.phase.agent_served_ms?.max),
        codes(rc.phase),
        rc.phase.failed_for_good
          ? `NOT ALL SERVED: ${fmt(rc.phase.failed_for_good)} failed for good after ${S.giveupSeconds} s`
          : notes(
              `all served ${fmt(rc.fromListeningS, 1)} s after the new server listened (${fmt(rc.fromExitS, 1)} s after the old one exited)`,
              `shutdown ${fmt(rc.shutdownMs / 1000, 1)} s, start ${fmt(rc.restartMs / 1000, 1)} s, database ready ${fmt(rc.databaseReadyS, 1)} s after the agent listener opened`,
              cpuPerAgent(rc.serverCpu, "new server, its start included"),
            ),
      ]);
    }
  };
  if (r.b2b) b2bRow(`b2b ${S.agents} agents`, r.b2b, cb, r.b2bCeilingBeside ? ` of ${fmt(cb)}` : "", { b: r.b2bCeilingBeside, name: "the ceiling" });
  if (r.fleet) fleetRows("fleet", r.fleet, S.rate, (r.fleetCeilingBeside ?? ceiling?.fleet)?.out.connect.all_served_s);
  if (r.overload) {
    const o = r.overload.steady;
    const refused = Object.entries(o.latency_failed_by_code_ms)
      .map(([c, l]) => `${c} p99 ${ms(l.p99)} ms`)
      .join(", ");
    rows.push([
      `overload ${fmt(2 * S.budget)}/s offered, budget ${fmt(S.budget)}`,
      fmt(o.ok_per_s),
      `${ratio(o.ok_per_s, S.budget)} budget`,
      ms(o.latency_ok_ms.p50),
      ms(o.latency_ok_ms.p99),
      ms(o.latency_ok_ms.max),
      codes(o),
      notes(
        `refused: ${refused || "none"}`,
        `with pushback ${fmt(o.pushback)}`,
        `connect ${r.overload.out.connect.failed_for_good ? `${fmt(r.overload.out.connect.failed_for_good)} failed for good` : `${fmt(r.overload.out.connect.all_served_s, 1)} s`}`,
        `RSS steady max ${mib(r.overload.rssSteadyMax)}`,
        stalledSeconds(o),
        diskText(o),
        txText(r.overload.counters),
      ),
    ]);
  }
  if (r.largeB2b) {
    const ref = r.largeB2bBeside && b2bRate(r.largeB2bBeside);
    b2bRow(`large ${fmt(S.largeMachines)}: b2b ${S.agents} agents`, r.largeB2b, ref, ` of ${fmt(ref)}`, { b: r.largeB2bBeside, name: `${fmt(S.fleet)} machines` });
  }
  if (r.largeFleet) fleetRows(`large ${fmt(S.largeMachines)}: fleet`, r.largeFleet, S.rate, r.largeFleetBeside?.out.connect.all_served_s);
  if (r.largeFleetBeside) fleetRows(`large: in turns, ${fmt(S.fleet)} machines: fleet`, r.largeFleetBeside, S.rate, undefined);
  out(`\n## ${r.target} (${load()} at its end)\n`);
  // The last cell of each row is its notes, printed under the table.
  out(table(head, rows.map((row) => row.slice(0, -1)), false));
  for (const row of rows) if (row.at(-1)) out(`  ${row[0]}: ${row.at(-1)}`);
  for (const e of r.errors) out(`  ! ${e}`);
}

function printSummary(results: TargetResults[]): void {
  const ceiling = results.find((r) => r.target === TARGET_LABELS.ceiling);
  const pgr = results.find((r) => r.target === TARGET_LABELS.postgres);
  const head = ["scenario", "figure", ...results.map((r) => r.target), "issue 8 target"];
  const rows: string[][] = [];
  const row = (scenario: string, figure: string, cell: (r: TargetResults) => string, goal: string) => rows.push([scenario, figure, ...results.map(cell), goal]);
  const b2b = `b2b, ${S.agents} agents`;
  row(b2b, "heartbeats/s (× the ceiling; a database target in turns with it)", (r) => (r.b2b ? `${fmt(b2bRate(r.b2b))} (${r === ceiling ? "1.00×" : ratio(b2bRate(r.b2b), ceilingB2b(r, ceiling))})` : "–"), "≥ 0.8× PostgreSQL, ≥ 0.6× PGlite");
  row(b2b, "the ceiling in turns with it", (r) => (r.b2bCeilingBeside ? fmt(b2bRate(r.b2bCeilingBeside)) : "–"), "");
  row(b2b, "p50 / p99 ms", (r) => (r.b2b ? `${ms(r.b2b.run.latency_ok_ms.p50)} / ${ms(r.b2b.run.latency_ok_ms.p99)}` : "–"), "");
  row(b2b, "errors", (r) => (r.b2b ? codes(r.b2b.run) : "–"), "");
  const steadyS = results.find((r) => r.fleet)?.fleet?.steady.seconds ?? S.steadySeconds;
  const fl = `${fmt(S.fleet)} agents, ${fmt(S.rate)}/s, ${fmt(steadyS)} s`;
  row(fl, "p50 / p99 ms", (r) => (r.fleet ? `${ms(r.fleet.steady.latency_ok_ms.p50)} / ${ms(r.fleet.steady.latency_ok_ms.p99)}` : "–"), "p99 < 50 ms");
  row(fl, "disk syncs over 50 ms meanwhile (slowest ms)", (r) => (r.fleet ? diskCell(r.fleet.steady) : "–"), "");
  row(fl, "OK/s; errors", (r) => (r.fleet ? `${fmt(r.fleet.steady.ok_per_s)}; ${codes(r.fleet.steady)}` : "–"), "0 errors");
  row(fl, "server RSS steady max (peak)", (r) => (r.fleet ? `${mib(r.fleet.rssSteadyMax)} (${mib(r.fleet.hwm)})` : "–"), "< 1 GiB");
  // The ceiling's connect and storm times are what TLS, HTTP/2 and the load
  // generator cost on this machine with no database: the floor of the
  // figures below. Compared with the ceiling's run right after each target's.
  const beside = (r: TargetResults) => r.fleetCeilingBeside ?? ceiling?.fleet;
  const vsCeiling = (r: TargetResults, s: number | undefined, c: number | undefined) => (r === ceiling || c === undefined ? "" : ` (${ratio(s, c)})`);
  const conn = (r: TargetResults, p: Phase | undefined) =>
    !p
      ? "–"
      : p.failed_for_good
        ? `> ${S.giveupSeconds} s: ${fmt(p.failed_for_good)} never served`
        : `${fmt(p.all_served_s, 1)} s${vsCeiling(r, p.all_served_s, beside(r)?.out.connect.all_served_s)}`;
  row(`connect ${fmt(S.fleet)} agents`, "until all served (× ceiling's connect)", (r) => conn(r, r.fleet?.out.connect), "< 20 s");
  row(`connect ${fmt(S.fleet)} agents`, "the ceiling's run beside it", (r) => (r.fleetCeilingBeside ? `${fmt(r.fleetCeilingBeside.out.connect.all_served_s, 1)} s` : "–"), "");
  row(
    `reconnect storm ${fmt(S.fleet)}`,
    "from listening (× ceiling's storm); from old exit",
    (r) =>
      !r.fleet?.reconnect
        ? "–"
        : r.fleet.reconnect.phase.failed_for_good
          ? `${fmt(r.fleet.reconnect.phase.failed_for_good)} failed for good`
          : `${fmt(r.fleet.reconnect.fromListeningS, 1)} s${vsCeiling(r, r.fleet.reconnect.fromListeningS, beside(r)?.reconnect?.fromListeningS)}; ${fmt(r.fleet.reconnect.fromExitS, 1)} s`,
    "< 20 s, none failed for good",
  );
  row(
    `reconnect storm ${fmt(S.fleet)}`,
    "the ceiling's storm beside it",
    (r) => (r.fleetCeilingBeside?.reconnect ? `${fmt(r.fleetCeilingBeside.reconnect.fromListeningS, 1)} s` : "–"),
    "",
  );
  const ov = `overload ${fmt(2 * S.budget)}/s, budget ${fmt(S.budget)}`;
  row(ov, "OK/s; p99 of OK ms", (r) => (r.overload ? `${fmt(r.overload.steady.ok_per_s)}; ${ms(r.overload.steady.latency_ok_ms.p99)}` : "–"), `≈ ${fmt(S.budget)}/s; < 100 ms`);
  row(
    ov,
    "refused: codes; p99 ms; with pushback",
    (r) =>
      r.overload
        ? `${codes(r.overload.steady)}; ${r.overload.steady.latency_failed_ms.count ? ms(r.overload.steady.latency_failed_ms.p99) : "–"}; ${fmt(r.overload.steady.pushback)}`
        : "–",
    "fast, defined answer",
  );
  if (pgr?.largeB2b || pgr?.largeFleet) {
    const lg = `large: ${fmt(S.largeMachines)} machines`;
    // Back to back: in turns with the 10,000-machine database (its own slices, not the run beside the ceiling).
    row(lg, `b2b heartbeats/s (× ${fmt(S.fleet)} machines in turns)`, (r) => (r.largeB2b ? `${fmt(b2bRate(r.largeB2b))} (${ratio(b2bRate(r.largeB2b), r.largeB2bBeside && b2bRate(r.largeB2bBeside))})` : "–"), "≥ 0.9×");
    row(lg, `b2b p99 ms (× ${fmt(S.fleet)} machines in turns)`, (r) => (r.largeB2b ? `${ms(r.largeB2b.run.latency_ok_ms.p99)} (${ratio(r.largeB2b.run.latency_ok_ms.p99, r.largeB2bBeside?.run.latency_ok_ms.p99)})` : "–"), "≤ 1.1×");
    row(
      lg,
      `${fmt(S.rate)}/s p99 ms (× ${fmt(S.fleet)} machines in turns); errors`,
      (r) =>
        r.largeFleet
          ? `${ms(r.largeFleet.steady.latency_ok_ms.p99)} (${ratio(r.largeFleet.steady.latency_ok_ms.p99, r.largeFleetBeside?.steady.latency_ok_ms.p99)}); ${codes(r.largeFleet.steady)}`
          : "–",
      "≤ 1.1×",
    );
    // What the database's size can change: the time each batch spends in it.
    const inDb = (large: Counters | undefined, small: Counters | undefined) =>
      large && large.batches > 0
        ? `${large.batchMeanMs.toFixed(1)} / ${large.batchP99Ms.toFixed(1)} (${ratio(large.batchMeanMs, small?.batchMeanMs)} / ${ratio(large.batchP99Ms, small?.batchP99Ms)})`
        : "–";
    row(lg, `b2b: batch in the database, mean / p99 ms (× ${fmt(S.fleet)} machines)`, (r) => inDb(r.largeB2b?.counters, r.largeB2bBeside?.counters), "");
    row(lg, `${fmt(S.rate)}/s: batch in the database, mean / p99 ms (× ${fmt(S.fleet)} machines)`, (r) => inDb(r.largeFleet?.counters, r.largeFleetBeside?.counters), "");
  }
  const shown = rows.filter((r) => r.slice(2, 2 + results.length).some((c) => c !== "–"));
  out(`\n## Summary (${cpus().length} cores, every process on this machine; ${new Date().toISOString().slice(0, 10)})\n`);
  out(table(head, shown, true));
}

// ---------------------------------------------------------------- main

const TARGET_LABELS = { ceiling: "ceiling (empty handler)", pglite: "PGlite on disk", postgres: "PostgreSQL" } as const;

async function main(): Promise<void> {
  for (const f of [SERVER_JS, CEILING_JS]) if (!existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
  const fleetSize = Math.max(S.agents, S.fleet);
  const limits = fdLimits();
  nofile = Math.min(limits.hard, Math.max(limits.soft, fleetSize + 4096));
  if (nofile < fleetSize + 1024) {
    throw new Error(
      `open-file limit too low: the server and the load generator each hold one socket per agent, so each needs more than ` +
        `${fmt(fleetSize + 1024)} file descriptors, and the hard limit (ulimit -Hn) is ${fmt(limits.hard)}. ` +
        `Raise it (e.g. ulimit -Hn 65536 as root, or LimitNOFILE), or lower BENCH_FLEET.`,
    );
  }

  const work = mkdtempSync(join(tmpdir(), "bmaas-bench-"));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  // Beside PGlite's directory (the bench's), on the disk the commits wait for.
  const probe = await DiskProbe.start(join(work, "disk-probe"), DISK_PROBE_PERIOD_MS);
  disk = probe;
  cleanups.push(() => probe.stop());
  log("building the load generator (Go, GOPATH mode)");
  loadgenBinary = buildLoadgen(work);
  agentsFile = join(work, "agents.txt");
  let t0 = performance.now();
  const fleet = makeFleet(fleetSize, agentsFile);
  log(`${fmt(fleetSize)} agent keys in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const certsDir = join(work, "certs");
  const dev = await loadOrCreateDevCerts(certsDir);
  const pki = { cert: dev.server.cert, key: dev.server.key, ca: dev.ca.cert };

  const wantFleet = S.scenarios.has("fleet") || S.scenarios.has("reconnect");
  const steady = S.scenarios.has("fleet") ? S.steadySeconds : 5;
  const budgetFlag = S.newFlags ? ["--heartbeat-budget", String(S.budget)] : [];
  out(
    `# Heartbeat benchmark: ${[...S.only].join(", ")}; scenarios ${[...S.scenarios].join(", ")}\n` +
      `b2b ${S.agents} agents × ${S.seconds} s; fleet ${fmt(S.fleet)} agents at ${fmt(S.rate)}/s for ${S.steadySeconds} s; ` +
      `overload ${fmt(2 * S.budget)}/s against a budget of ${fmt(S.budget)} for ${S.overloadSeconds} s; per-call deadline ${S.deadlineMs} ms; ` +
      `give-up ${S.giveupSeconds} s${S.newFlags ? "" : "; new server flags left out (BENCH_NEW_FLAGS=0)"}; ${load()} at the start`,
  );

  const results: TargetResults[] = [];
  let ceilingResults: TargetResults | undefined;
  const targets: Target[] = [];
  if (S.only.has("ceiling")) {
    targets.push({ key: "ceiling", label: TARGET_LABELS.ceiling, start: (port, _extra, heldFd) => ServerProcess.ceiling(pki, port, heldFd) });
  }
  if (S.only.has("pglite")) {
    const dir = join(work, "pglite");
    let registered: Promise<void> | undefined;
    targets.push({
      key: "pglite",
      label: TARGET_LABELS.pglite,
      start: async (port, extra, heldFd) => {
        await (registered ??= registerMachines(dir, fleet));
        return ServerProcess.bmaas(TARGET_LABELS.pglite, dir, certsDir, `127.0.0.1:${port}`, extra, heldFd);
      },
    });
  }
  let pgAvailable = false;
  if (S.only.has("postgres")) {
    try {
      const c = new pg.Client({ connectionString: S.pgUrl });
      await c.connect();
      await c.end();
      pgAvailable = true;
    } catch (e) {
      out(`\n(PostgreSQL skipped: ${S.pgUrl}: ${(e as Error).message})`);
    }
  }
  if (pgAvailable) {
    let url: Promise<string> | undefined;
    targets.push({
      key: "postgres",
      label: TARGET_LABELS.postgres,
      start: async (port, extra, heldFd) => {
        const u = await (url ??= createPostgresDatabase().then(async (u) => (await registerMachines(u, fleet), u)));
        return ServerProcess.bmaas(TARGET_LABELS.postgres, u, certsDir, `127.0.0.1:${port}`, extra, heldFd);
      },
    });
  }

  const ceilingTarget = targets.find((t) => t.key === "ceiling");
  for (const target of targets) {
    const r: TargetResults = { target: target.label, errors: [] };
    if (target.key === "ceiling") ceilingResults = r;
    const attempt = async <T>(name: string, f: () => Promise<T>): Promise<T | undefined> => {
      t0 = performance.now();
      log(`${target.label}: ${name}`);
      try {
        return await f();
      } catch (e) {
        const msg = `${name} failed: ${(e as Error).message}`;
        log(`${target.label}: ${msg}`);
        r.errors.push(msg.split("\n").slice(0, 12).join("\n    "));
        return undefined;
      } finally {
        log(`${target.label}: ${name} took ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      }
    };
    if (S.scenarios.has("b2b")) {
      if (ceilingTarget && target !== ceilingTarget) {
        const both = await attempt("b2b in turns with the ceiling", () => runB2bInTurns(target, ceilingTarget));
        if (both) {
          r.b2b = both.mine;
          r.b2bCeilingBeside = both.theirs;
        }
      } else {
        r.b2b = await attempt("b2b", () => runB2b(target, () => target.start(0, [])));
      }
    }
    if (wantFleet) {
      const reconnect = S.scenarios.has("reconnect");
      r.fleet = await attempt(reconnect ? "fleet + reconnect" : "fleet", () => runFleet(target, (port, heldFd) => target.start(port, [], heldFd), S.rate, steady, reconnect));
      if (r.fleet && ceilingTarget && target !== ceilingTarget) {
        // Connecting and reconnecting are bound by TLS on a machine whose
        // speed drifts: the ceiling does both again right after, for the ratio.
        r.fleetCeilingBeside = await attempt("fleet: the ceiling again, beside it", () =>
          runFleet(ceilingTarget, (port, heldFd) => ceilingTarget.start(port, [], heldFd), S.rate, 5, reconnect),
        );
      }
    }
    if (S.scenarios.has("overload") && target.key !== "ceiling") {
      r.overload = await attempt("overload", () => runFleet(target, (port) => target.start(port, budgetFlag), 2 * S.budget, S.overloadSeconds, false));
    }
    if (S.large && target.key === "postgres") {
      let largeUrl: Promise<string> | undefined;
      const large: Target = {
        key: "postgres",
        label: `${TARGET_LABELS.postgres}, ${fmt(S.largeMachines)} machines`,
        start: async (port, extra) => {
          const u = await (largeUrl ??= createPostgresDatabase().then(async (u) => (await registerMachines(u, fleet, Math.max(0, S.largeMachines - fleet.ids.length)), u)));
          return ServerProcess.bmaas(large.label, u, certsDir, `127.0.0.1:${port}`, extra);
        },
      };
      const both = await attempt(`large: b2b in turns with ${fmt(S.fleet)} machines`, () => runB2bInTurns(large, target));
      if (both) {
        r.largeB2b = both.mine;
        r.largeB2bBeside = both.theirs;
      }
      // In turns with the 10,000-machine database, as its back to back: the
      // open loop's p99 is a few ms, and runs minutes apart moved it by 1.2-1.4x.
      const fleets = await attempt(`large: fleet in turns with ${fmt(S.fleet)} machines`, () => runFleetInTurns(large, target, S.rate, S.steadySeconds));
      if (fleets) {
        r.largeFleet = fleets.mine;
        r.largeFleetBeside = fleets.theirs;
      }
    }
    results.push(r);
    printTarget(r, ceilingResults);
  }
  printSummary(results);
  const syncs = syncPercentiles(probe.syncs);
  const stalls = probe.slowerThan(DISK_STALL_MS);
  out(
    `\ndisk (${DISK_PROBE_TEXT}, the whole run): ${fmt(syncs.count)} syncs, p50 ${ms(syncs.p50)} ms, p99 ${ms(syncs.p99)} ms, max ${ms(syncs.max)} ms; ` +
      `${fmt(stalls.length)} over ${DISK_STALL_MS} ms`,
  );
  if (results.some((r) => r.errors.length)) process.exitCode = 1;
  if (S.json) {
    const diskFigures = { probe: DISK_PROBE_TEXT, ...syncs, over20ms: probe.slowerThan(20) };
    writeFileSync(S.json, JSON.stringify({ settings: { ...S, only: [...S.only], scenarios: [...S.scenarios] }, results, disk: diskFigures }, null, 2));
    out(`\nraw figures: ${S.json}`);
  }
}

try {
  await main();
} catch (e) {
  process.stderr.write(`heartbeat-bench: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
