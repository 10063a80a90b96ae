// Web view benchmark: 100k machines (BENCH_MACHINES) in a fresh PostgreSQL
// database, then the overview, 100-machine pages and a machine page fetched
// from the real web listener. Prints the server's own render time (its
// Server-Timing header: database reads + HTML) and the time to the last byte
// as p50/p99, and the page weight; asserts nothing. Environment:
// BENCH_DATABASE_URL (the local PostgreSQL by default), BENCH_MACHINES, BENCH_ROUNDS.
import { pino } from "pino";
import { openBmdb } from "../../bmdb/index.js";
import { createDevPki } from "../../lib/certs.js";
import { BmaasServer } from "../../server/server.js";
import { OverviewSnapshot } from "../../server/web/overview-data.js";
import { createBenchDatabase } from "./bench-database.js";
import { populateFleet } from "./populate-fleet.js";

process.noDeprecation = true;
const MACHINES = Number(process.env.BENCH_MACHINES ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);

function pct(ms: number[], p: number): number {
  const s = [...ms].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function main(): Promise<void> {
  const database = await createBenchDatabase("bmaas_webbench");
  const bmdb = await openBmdb(database.url);
  const pki = await createDevPki();
  let server: BmaasServer | undefined;
  try {
    const t0 = performance.now();
    await populateFleet(bmdb, MACHINES);
    process.stdout.write(`populated ${MACHINES} machines in ${((performance.now() - t0) / 1000).toFixed(1)}s\n`);
    server = await BmaasServer.start({
      publicListenAddress: "127.0.0.1:0",
      internalListenAddress: "127.0.0.1:0",
      webListenAddress: "127.0.0.1:0",
      serverCert: pki.server.cert,
      serverKey: pki.server.key,
      operatorCa: pki.ca.cert,
      maxRequestBytes: 4 << 20,
      staleSweepIntervalMs: 0,
      fleetStatsRefreshMs: 3_600_000,
      bmdb,
      logger: pino({ level: "silent" }),
    });
    const base = server.webView!.url.replace(/\/$/, "");
    const mid = (await bmdb.listMachines({}, 1, "80000000-0000-0000-0000-000000000000")).machines[0]!.machineId;
    const withHw = (await bmdb.listMachines({ hasHardwareReport: true }, 1)).machines[0]!.machineId;
    const renderMs = async (path: string) => {
      const res = await fetch(base + path);
      await res.text();
      return Number(/dur=([\d.]+)/.exec(res.headers.get("server-timing") ?? "")?.[1]);
    };
    // Right after start the web view's primed reading is still running: only
    // such a view waits for it. Later, a change to the fleet makes the shared
    // figures stale, and the next view gets the old ones at once while a new
    // reading runs (server/web/overview-data.ts).
    const coldMs = await renderMs("/");
    await bmdb.createMachine();
    await new Promise((r) => setTimeout(r, 300));
    const changedMs = await renderMs("/");
    const readings: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await new OverviewSnapshot(bmdb).figures();
      readings.push(performance.now() - t);
    }
    const cases: [string, string][] = [
      ["overview", "/"],
      ["machines, first 100", "/machines?size=100"],
      ["machines, 100 mid keyspace", `/machines?size=100&after=${mid}`],
      ["machines, 100 stale", "/machines?size=100&heartbeat=stale"],
      ["machines, 100 needing recovery, ovh", "/machines?size=100&recovery=yes&provider=ovh"],
      ["machines, search provider ID prefix", `/machines?size=100&q=${mid.slice(0, 4)}`],
      ["machine page", `/machines/${withHw}`],
    ];
    const rows: string[][] = [];
    for (const [label, path] of cases) {
      const render: number[] = [];
      const total: number[] = [];
      let bytes = 0;
      for (let i = 0; i < ROUNDS + 2; i++) {
        const t = performance.now();
        const res = await fetch(base + path);
        const body = await res.text();
        const elapsed = performance.now() - t;
        if (res.status !== 200) throw new Error(`${path}: ${res.status} ${body.slice(0, 200)}`);
        if (i < 2) continue; // warm-up
        render.push(Number(/dur=([\d.]+)/.exec(res.headers.get("server-timing") ?? "")?.[1]));
        total.push(elapsed);
        bytes = Buffer.byteLength(body);
      }
      rows.push([label, pct(render, 50).toFixed(1), pct(render, 99).toFixed(1), pct(total, 50).toFixed(1), (bytes / 1024).toFixed(1)]);
    }
    const assets = await Promise.all(["/static/app.js", "/static/style.css"].map(async (p) => Buffer.byteLength(await (await fetch(base + p)).text())));
    const head = ["page", "render p50 ms", "render p99 ms", "fetch p50 ms", "HTML KiB"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join("  ");
    process.stdout.write(`\n${MACHINES} machines on PostgreSQL, ${ROUNDS} rounds each (server render time from Server-Timing)\n${line(head)}\n${rows.map(line).join("\n")}\n`);
    process.stdout.write(
      `\noverview, first view right after start (waits for the primed reading): ${coldMs.toFixed(0)} ms; ` +
        `first view after the fleet changed (old figures at once, re-read behind): ${changedMs.toFixed(1)} ms; ` +
        `the reading itself (FleetStats + heartbeat ages): p50 ${pct(readings, 50).toFixed(0)} ms\n`,
    );
    process.stdout.write(`\nstatic: app.js ${(assets[0]! / 1024).toFixed(1)} KiB, style.css ${(assets[1]! / 1024).toFixed(1)} KiB (uncompressed)\n`);
  } finally {
    await server?.stop();
    await bmdb.close();
    await database.drop();
  }
}

await main();
