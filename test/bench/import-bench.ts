// Bulk-import benchmark: `bmctl machine import` of BENCH_IMPORT_MACHINES
// (100,000) machines, each with its own Ed25519 key, into a fresh PostgreSQL
// database through a real server (mTLS gRPC, ImportMachines in batches), then
// the same file again (the idempotent re-run). bmctl runs as its own process,
// as an operator would run it. Prints the figures; asserts nothing.
// Environment: BENCH_DATABASE_URL (the local PostgreSQL by default),
// BENCH_IMPORT_MACHINES, BENCH_IMPORT_ARGS (extra bmctl flags, e.g. "--parallel 4").
import { spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { pino } from "pino";
import { openBmdb } from "../../bmdb/index.js";
import { createDevPki } from "../../lib/certs.js";
import { BmaasServer } from "../../server/server.js";

process.noDeprecation = true;
const PG_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const MACHINES = Number(process.env.BENCH_IMPORT_MACHINES ?? 100_000);
const EXTRA = (process.env.BENCH_IMPORT_ARGS ?? "").split(" ").filter(Boolean);
const ROOT = join(import.meta.dirname, "..", "..", "..");

async function admin(query: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(query);
  } finally {
    await c.end();
  }
}

function rawPublicKeyHex(): string {
  const { publicKey } = generateKeyPairSync("ed25519");
  return Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("hex");
}

function bmctl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }> {
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, "dist", "cmd", "bmctl.js"), ...args], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stdout, stderr, seconds: Number(process.hrtime.bigint() - started) / 1e9 }));
  });
}

async function main(): Promise<void> {
  const dbName = `bmaas_import_bench_${randomBytes(4).toString("hex")}`;
  await admin(`create database ${dbName}`);
  const url = new URL(PG_URL);
  url.pathname = `/${dbName}`;
  const dir = mkdtempSync(join(tmpdir(), "bmaas-import-bench-"));
  const bmdb = await openBmdb(url.toString());
  const pki = await createDevPki();
  const server = await BmaasServer.start({
    publicListenAddress: "127.0.0.1:0",
    internalListenAddress: "127.0.0.1:0",
    serverCert: pki.server.cert,
    serverKey: pki.server.key,
    operatorCa: pki.ca.cert,
    maxRequestBytes: 4 * 1024 * 1024,
    staleSweepIntervalMs: 0,
    bmdb,
    logger: pino({ level: "warn" }),
  });
  try {
    const certs = join(dir, "certs");
    mkdirSync(certs);
    writeFileSync(join(certs, "ca.pem"), pki.ca.cert);
    writeFileSync(join(certs, "operator.pem"), pki.operator.cert);
    writeFileSync(join(certs, "operator-key.pem"), pki.operator.key);

    const t = Date.now();
    const lines = ["provider,provider_id,public_key"];
    for (let i = 0; i < MACHINES; i++) lines.push(`bench,m-${i},${rawPublicKeyHex()}`);
    const file = join(dir, "machines.csv");
    writeFileSync(file, lines.join("\n") + "\n");
    console.log(`file: ${MACHINES} machines with keys, ${((Date.now() - t) / 1000).toFixed(1)}s to generate`);

    const args = ["--server", server.internalAddress, "--certs-dir", certs, "machine", "import", file, ...EXTRA];
    for (const run of ["first import", "second import (idempotent)"]) {
      const r = await bmctl(args);
      if (r.code !== 0) throw new Error(`bmctl failed (${r.code}): ${r.stderr}`);
      console.log(`${run}: ${r.seconds.toFixed(1)}s wall (bmctl process, parse and check included) = ${Math.round(MACHINES / r.seconds)} machines/s; bmctl says: ${r.stdout.trim()}`);
    }
    const check = new pg.Client({ connectionString: url.toString() });
    await check.connect();
    const { rows } = await check.query<{ n: number }>("select count(*)::int as n from machine_agent_started where admission = 'preauthorized'");
    await check.end();
    console.log(`check: ${rows[0]!.n} preauthorized keys in the database`);
  } finally {
    await server.stop();
    await bmdb.close();
    rmSync(dir, { recursive: true, force: true });
    await admin(`drop database if exists ${dbName} with (force)`);
  }
}

await main();
process.exit(0);
