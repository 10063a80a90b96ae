// The server side of the heartbeat benchmark, in its own process so that its
// RSS and CPU are its own. Driven over IPC by heartbeat-bench.ts.
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { openBmdb, type Bmdb } from "../../bmdb/index.js";
import { AgentCallback } from "../../gen/cloud/bmaas/server/api/agent_pb.js";
import { listenForAgents } from "../../server/agent-listener.js";
import { boundAddress } from "../../server/listen.js";
import { implement, serviceDefinition } from "../../lib/grpc-adapter.js";
import { statusMapper } from "../../server/rpc-error.js";
import { BmaasServer } from "../../server/server.js";

export type BenchRequest = { kind: "register"; publicKeys: string[] } | { kind: "rss" } | { kind: "stats" };
export type BenchReply =
  | { kind: "ready"; address: string }
  | { kind: "registered"; machineIds: string[] }
  | { kind: "rss"; rss: number }
  | { kind: "stats"; executed: number; retried: number; failed: number };

const [mode, url, certJson] = process.argv.slice(2);
const pki = JSON.parse(certJson!) as { cert: string; key: string; ca: string };
const logger = pino({ level: "silent" });
const send = (m: BenchReply) => process.send!(m);

let bmdb: Bmdb | undefined;

if (mode === "empty") {
  // The ceiling: the same TLS listener and gRPC stack, a handler that does nothing.
  const g = new grpc.Server();
  const agents = await listenForAgents(g, grpc.ServerCredentials.createInsecure(), {
    address: { host: "127.0.0.1", port: 0 },
    cert: pki.cert,
    key: pki.key,
    logger,
  });
  g.addService(serviceDefinition(AgentCallback), implement(AgentCallback, { heartbeat: async () => ({}) }, statusMapper(logger)));
  send({ kind: "ready", address: boundAddress(agents.server) });
} else {
  bmdb = await openBmdb(url!, { poolSize: 20 });
  const server = await BmaasServer.start({
    publicListenAddress: "127.0.0.1:0",
    internalListenAddress: "127.0.0.1:0",
    serverCert: pki.cert,
    serverKey: pki.key,
    operatorCa: pki.ca,
    maxRequestBytes: 4 << 20,
    bmdb,
    logger,
  });
  send({ kind: "ready", address: server.publicAddress });
}

process.on("message", async (m: BenchRequest) => {
  if (m.kind === "register") {
    const ids: string[] = [];
    for (const k of m.publicKeys) {
      const id = await bmdb!.createMachine();
      await bmdb!.registerAgent(id, Buffer.from(k, "hex"));
      ids.push(id);
    }
    send({ kind: "registered", machineIds: ids });
  } else if (m.kind === "rss") {
    send({ kind: "rss", rss: process.memoryUsage().rss });
  } else if (m.kind === "stats") {
    const s = bmdb?.stats ?? { executed: 0, retried: 0, failed: 0 };
    send({ kind: "stats", executed: s.executed, retried: s.retried, failed: s.failed });
  }
});
