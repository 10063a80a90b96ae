// The ceiling of the heartbeat benchmark, in its own process so that its RSS
// and CPU are its own: the same agent listener (TLS, per-connection identity,
// HTTP/2, request decoding and validation) with a handler that answers every
// heartbeat without a database. Started by heartbeat-bench.ts as
// `bench-server.js empty '{"cert","key","ca"}'`; it sends {kind:"ready",address}.
import { pino } from "pino";
import { HEARTBEAT_PATHS } from "../../server/agent-callback-service.js";
import { defaultAgentThreads, listenForAgentsOnThreads } from "../../server/agent-listener-threads.js";
import { Code, WireStatus } from "../../server/grpc-wire.js";
import { parseHeartbeatRequest } from "../../server/heartbeat-request.js";
import { agentSocket, inheritedSockets } from "../../server/inherited-sockets.js";
import { boundAddress } from "../../server/listen.js";

export type BenchReply = { kind: "ready"; address: string };

const [mode, certJson] = process.argv.slice(2);
if (mode !== "empty") throw new Error(`bench-server: unknown mode ${mode}`);
const pki = JSON.parse(certJson!) as { cert: string; key: string; ca: string };

// A socket held by the bench across restarts (BENCH_HOLD_SOCKET), as bmaas-server takes it.
const inheritedFd = agentSocket(inheritedSockets().sockets);

const agents = await listenForAgentsOnThreads({
  // As many listener threads as bmaas-server: BMAAS_AGENT_THREADS is its --agent-threads too (a flag in BENCH_SERVER_ARGS would not reach the ceiling).
  threads: Number(process.env.BMAAS_AGENT_THREADS) || defaultAgentThreads(),
  maxRequestBytes: 256 * 1024,
  bodyTimeoutMs: 30_000,
  // BENCH_CEILING_PORT: a fixed port, so that a ceiling can be restarted on it (a reconnect storm without a database).
  address: { host: "127.0.0.1", port: Number(process.env.BENCH_CEILING_PORT) || 0 },
  ...(inheritedFd !== undefined && { inheritedFd }),
  cert: pki.cert,
  key: pki.key,
  paths: HEARTBEAT_PATHS,
  limits: {
    maxConnections: 200_000,
    maxConnectionsPerAddress: 200_000,
    // As bmaas-server reads it (--tls-ed25519-decoder), so that the ceiling decodes keys as the servers do.
    ed25519Decoder: process.env.BMAAS_TLS_ED25519_DECODER === "provider" ? "provider" : "legacy",
  },
  handler: (call) => {
    call
      .readMessage(256 * 1024, 30_000)
      .then((body) => {
        parseHeartbeatRequest(body);
        call.respond(new Uint8Array());
      })
      .catch((e: unknown) => call.fail(e instanceof WireStatus ? e : new WireStatus(Code.INTERNAL, "internal error")));
  },
  logger: pino({ level: "silent" }),
});
process.send!({ kind: "ready", address: boundAddress(agents.server) } satisfies BenchReply);
// On SIGTERM, close as bmaas-server does (GOAWAY, calls in flight finish),
// so that the agents' reconnect storm starts as it does against the real
// server; then exit normally, so that node flags such as --cpu-prof write
// their output. BENCH_CEILING_ABRUPT=1: exit at once (connections reset).
process.once("SIGTERM", () => {
  if (process.env.BENCH_CEILING_ABRUPT === "1") process.exit(0);
  void agents.close(2_000).finally(() => process.exit(0));
});
