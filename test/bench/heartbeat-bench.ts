// Heartbeat benchmark: N simulated agents, each with its own Ed25519 key,
// ephemeral certificate and TLS connection, heartbeating back to back against
// a server process on PGlite (on disk, as `npm start`) and on PostgreSQL, with
// an empty handler over the same TLS setup as the ceiling. Prints figures; it
// asserts nothing. Environment: BENCH_AGENTS (200), BENCH_SECONDS (10),
// BENCH_DATABASE_URL (the local PostgreSQL; "" skips it).
import * as grpc from "@grpc/grpc-js";
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { AgentCallback } from "../../gen/cloud/bmaas/server/api/agent_pb.js";
import { createAgentCertificate, createDevPki, generateAgentKey, rawEd25519PublicKey } from "../../lib/certs.js";
import { createClient } from "../../lib/grpc-adapter.js";
import type { BenchReply, BenchRequest } from "./bench-server.js";

process.noDeprecation = true;
const AGENTS = Number(process.env.BENCH_AGENTS ?? 200);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const PG_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

interface Result {
  target: string;
  ok: number;
  errors: number;
  seconds: number;
  latenciesMs: number[];
  rssBytes: number;
  retried: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runTarget(
  target: string,
  mode: string,
  url: string,
  pki: { cert: string; key: string; ca: string },
  agents: { publicKey: string; credentials: grpc.ChannelCredentials }[],
): Promise<Result> {
  const child = fork(join(import.meta.dirname, "bench-server.js"), [mode, url, JSON.stringify(pki)], { stdio: "inherit" });
  const replies: BenchReply[] = [];
  const waiters: ((r: BenchReply) => void)[] = [];
  child.on("message", (m: BenchReply) => {
    const w = waiters.shift();
    if (w) w(m);
    else replies.push(m);
  });
  const next = () => new Promise<BenchReply>((r) => (replies.length ? r(replies.shift()!) : waiters.push(r)));
  const ask = (m: BenchRequest) => (child.send(m), next());

  const ready = await next();
  if (ready.kind !== "ready") throw new Error("bench server did not start");
  let machineIds = agents.map(() => "00000000-0000-4000-8000-000000000000");
  if (mode !== "empty") {
    const reg = await ask({ kind: "register", publicKeys: agents.map((a) => a.publicKey) });
    if (reg.kind !== "registered") throw new Error("registration failed");
    machineIds = reg.machineIds;
  }
  const clients = agents.map((a) =>
    createClient(AgentCallback, ready.address, a.credentials, { "grpc.use_local_subchannel_pool": 1, "grpc.ssl_target_name_override": "localhost" }),
  );
  // Connect everyone (and warm up) before measuring.
  await Promise.all(clients.map((c, i) => c.heartbeat({ machineId: machineIds[i]! }).catch(() => {})));

  const latencies: number[] = [];
  let ok = 0;
  let errors = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  await Promise.all(
    clients.map(async (c, i) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await c.heartbeat({ machineId: machineIds[i]! });
          ok++;
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  const rss = await ask({ kind: "rss" });
  const stats = await ask({ kind: "stats" });
  clients.forEach((c) => c.close());
  child.kill("SIGKILL");
  latencies.sort((a, b) => a - b);
  return {
    target,
    ok,
    errors,
    seconds,
    latenciesMs: latencies,
    rssBytes: rss.kind === "rss" ? rss.rss : NaN,
    retried: stats.kind === "stats" ? stats.retried : 0,
  };
}

async function postgresDatabase(): Promise<{ url: string; drop: () => Promise<void> } | undefined> {
  if (!PG_URL) return undefined;
  const name = `bmaas_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  try {
    await admin.connect();
    await admin.query(`create database ${name}`);
  } catch (e) {
    process.stderr.write(`skipping PostgreSQL: ${(e as Error).message}\n`);
    return undefined;
  } finally {
    await admin.end().catch(() => {});
  }
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

async function main(): Promise<void> {
  const dev = await createDevPki();
  const pki = { cert: dev.server.cert, key: dev.server.key, ca: dev.ca.cert };
  process.stdout.write(`preparing ${AGENTS} agents (keys + ephemeral certificates)…\n`);
  const agents = await Promise.all(
    Array.from({ length: AGENTS }, async () => {
      const key = generateAgentKey();
      const cert = await createAgentCertificate(key);
      return {
        publicKey: Buffer.from(rawEd25519PublicKey(key)).toString("hex"),
        credentials: grpc.credentials.createSsl(Buffer.from(pki.ca), Buffer.from(cert.key), Buffer.from(cert.cert)),
      };
    }),
  );

  const results: Result[] = [];
  results.push(await runTarget("empty handler (ceiling)", "empty", "", pki, agents));
  const dir = mkdtempSync(join(tmpdir(), "bmaas-bench-"));
  try {
    results.push(await runTarget("PGlite on disk", "bmdb", join(dir, "db"), pki, agents));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const pgdb = await postgresDatabase();
  if (pgdb) {
    try {
      results.push(await runTarget("PostgreSQL", "bmdb", pgdb.url, pki, agents));
    } finally {
      await pgdb.drop();
    }
  }

  const ceiling = results[0]!.ok / results[0]!.seconds;
  const rows = results.map((r) => {
    const rate = r.ok / r.seconds;
    return [
      r.target,
      rate.toFixed(0),
      (rate / ceiling).toFixed(2),
      percentile(r.latenciesMs, 50).toFixed(1),
      percentile(r.latenciesMs, 99).toFixed(1),
      String(r.errors),
      String(r.retried),
      (r.rssBytes / 2 ** 20).toFixed(0),
    ];
  });
  const head = ["target", "heartbeats/s", "vs empty", "p50 ms", "p99 ms", "errors", "tx retries", "server RSS MiB"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  process.stdout.write(`\n${AGENTS} agents, ${SECONDS}s each, every process on this machine's ${(await import("node:os")).cpus().length} cores\n`);
  process.stdout.write(line(head) + "\n" + rows.map(line).join("\n") + "\n");
}

await main();
