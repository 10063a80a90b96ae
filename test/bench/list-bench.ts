// ListMachines benchmark: 100k machines (BENCH_MACHINES) with a realistic mix
// of tags in a fresh PostgreSQL database, then filtered pages through the
// real operator API (mTLS gRPC) and through bmdb alone. Prints p50/p99 per
// filter; asserts nothing. Environment: BENCH_DATABASE_URL (the local
// PostgreSQL by default), BENCH_MACHINES, BENCH_ROUNDS.
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { openBmdb } from "../../bmdb/index.js";
import { createBenchDatabase } from "./bench-database.js";
import { populateFleet } from "./populate-fleet.js";
import { HeartbeatState, OperatorService, type ListMachinesRequestSchema } from "../../gen/bmaas/operator/v1/operator_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createDevPki } from "../../lib/certs.js";
import { createClient } from "../../lib/grpc-adapter.js";
import { BmaasServer } from "../../server/server.js";

process.noDeprecation = true;
const MACHINES = Number(process.env.BENCH_MACHINES ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 40);

function stats(ms: number[]): { p50: number; p99: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
  return { p50: at(50), p99: at(99) };
}

async function main(): Promise<void> {
  const database = await createBenchDatabase("bmaas_listbench");
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
      serverCert: pki.server.cert,
      serverKey: pki.server.key,
      operatorCa: pki.ca.cert,
      maxRequestBytes: 4 << 20,
      staleSweepIntervalMs: 0,
      fleetStatsRefreshMs: 3_600_000,
      bmdb,
      logger: pino({ level: "silent" }),
    });
    const op = createClient(
      OperatorService,
      server.internalAddress,
      grpc.credentials.createSsl(Buffer.from(pki.ca.cert), Buffer.from(pki.operator.key), Buffer.from(pki.operator.cert)),
      { "grpc.ssl_target_name_override": "localhost" },
    );

    // A cursor in the middle of the keyspace, for a deep page.
    const mid = (await bmdb.listMachines({}, 1, "80000000-0000-0000-0000-000000000000")).machines[0]!.machineId;
    const midToken = Buffer.from(JSON.stringify({ after: mid })).toString("base64url");
    type Req = MessageInitShape<typeof ListMachinesRequestSchema>;
    const cases: [string, Req][] = [
      ["first page, no filter", {}],
      ["deep page (mid keyspace)", { pageToken: midToken }],
      ["heartbeat=stale", { heartbeatState: HeartbeatState.STALE }],
      ["heartbeat=never", { heartbeatState: HeartbeatState.NEVER }],
      ["needs_recovery", { needsRecovery: true }],
      ["provider=ovh", { provider: "ovh" }],
      ["has_hardware_report=false", { hasHardwareReport: false }],
      ["pending_installation", { pendingInstallation: true }],
      ["provider=hetzner + stale + pending", { provider: "hetzner", heartbeatState: HeartbeatState.STALE, pendingInstallation: true }],
    ];
    const rows: string[][] = [];
    for (const [label, req] of cases) {
      const rpc: number[] = [];
      let count = 0;
      for (let i = 0; i < ROUNDS; i++) {
        const t = performance.now();
        const page = await op.listMachines({ pageSize: 100, ...req });
        rpc.push(performance.now() - t);
        count = page.machines.length;
      }
      const r = stats(rpc);
      rows.push([label, String(count), r.p50.toFixed(1), r.p99.toFixed(1)]);
    }
    const fs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await op.fleetStats({});
      fs.push(performance.now() - t);
    }
    op.close();
    const head = ["ListMachines (page size 100, via gRPC)", "rows", "p50 ms", "p99 ms"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join("  ");
    process.stdout.write(`\n${MACHINES} machines on PostgreSQL, ${ROUNDS} rounds each\n${line(head)}\n${rows.map(line).join("\n")}\n`);
    const f = stats(fs);
    process.stdout.write(`\nFleetStats over ${MACHINES} machines: p50 ${f.p50.toFixed(0)} ms, max ${Math.max(...fs).toFixed(0)} ms\n`);
  } finally {
    await server?.stop();
    await bmdb.close();
    if (process.env.BENCH_KEEP) {
      process.stdout.write(`kept database ${database.name}\n`);
      return;
    }
    await database.drop();
  }
}

await main();
