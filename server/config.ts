import { Option, type Command } from "commander";
import { resolve } from "node:path";
import { loadOrCreateDevCerts } from "../lib/certs.js";
import { booleanOption, numberArg, secondsArg } from "../lib/flags.js";
import { readNamedFile } from "../lib/read-file.js";
import { DEFAULT_CONNECTION_LIMITS } from "./agent-connections.js";
import { defaultAgentThreads } from "./agent-listener-threads.js";
import { AGENT_SOCKET_NAME, agentSocket, inheritedSockets } from "./inherited-sockets.js";
import type { Ed25519Decoder } from "./ed25519-key-decode.js";
import { parseEnrollmentCas } from "./enrollment-ca.js";
import { parseListenAddress } from "./listen.js";
import { DEFAULT_PENDING_EXPIRY_MS, type ServerOptions } from "./server.js";

/** Flags of the server itself (the database's are bmdb's own). */
export interface ServerFlags {
  publicListen: string;
  internalListen: string;
  tlsCert?: string;
  tlsKey?: string;
  operatorCa?: string;
  enrollmentCa?: string[];
  devCerts?: string;
  maxRequestBytes: number;
  shutdownGrace: number;
  agentHeartbeatInterval: number;
  metricsListen: string;
  metricsMtls?: boolean;
  webListen: string;
  fleetStatsRefresh: number;
  staleSweepInterval: number;
  admissionPendingExpiry: number;
  memoryTrimInterval: number;
  watchMaxQueued: number;
  agentMaxRequestBytes: number;
  agentThreads: number;
  agentMaxConnections: number;
  agentMaxConnectionsPerIp: number;
  agentMaxHandshakes: number;
  agentHandshakeTimeout: number;
  agentHandshakeWait: number;
  agentClientCertificateCheck: "native" | "tap";
  tlsEd25519Decoder: Ed25519Decoder;
  agentIdleTimeout: number;
  agentMaxConnectionAge: number;
  agentKeepalive: number;
  agentMaxInflight: number;
  heartbeatBatches: number;
  heartbeatBudget: number;
  logLevel: string;
}

/**
 * What the flags resolve to (addresses checked, certificate files read): the
 * server's own options but its database and logger, which cmd/ adds.
 */
export type ServerConfigValues = Omit<ServerOptions, "bmdb" | "logger"> & {
  logLevel: string;
  /** Set when --dev-certs was used: where the files are and whether this start made them. */
  devCerts?: { dir: string; created: boolean };
};

// Seconds flags become Node timers, which misfire above 2^31-1 ms.
const seconds = secondsArg(0);
const count = numberArg({ min: 0, integer: true });
const positiveCount = numberArg({ min: 1, integer: true });

function readPem(flag: string, file: string): string {
  return readNamedFile(flag, file).toString("utf8");
}

/**
 * The agent listener's socket when the supervisor passed sockets (systemd
 * socket activation, ./inherited-sockets.ts); then --public-listen is not
 * used. Passed sockets that include none for the agents are an error.
 */
function inheritedAgentSocket(env: NodeJS.ProcessEnv): number | undefined {
  const { sockets, problem } = inheritedSockets(env);
  if (problem) throw new Error(`socket activation: ${problem}`);
  if (sockets.size === 0) return undefined;
  const fd = agentSocket(sockets);
  if (fd === undefined) throw new Error(`socket activation: none of the sockets passed (${[...sockets.keys()].join(", ")}) is named "${AGENT_SOCKET_NAME}"`);
  return fd;
}

export const ServerConfig = {
  registerFlags(cmd: Command): Command {
    return cmd
      .addOption(new Option("--public-listen <addr>", "agent listener (TLS)").env("BMAAS_PUBLIC_LISTEN").default(":8080"))
      .addOption(new Option("--internal-listen <addr>", "operator listener (mTLS)").env("BMAAS_INTERNAL_LISTEN").default(":4242"))
      .addOption(new Option("--tls-cert <file>", "PEM certificate the server presents").env("BMAAS_TLS_CERT"))
      .addOption(new Option("--tls-key <file>", "PEM private key of --tls-cert").env("BMAAS_TLS_KEY"))
      .addOption(new Option("--operator-ca <file>", "PEM CA that operator client certificates must chain to").env("BMAAS_OPERATOR_CA"))
      .addOption(
        new Option("--enrollment-ca <file>", "PEM CA whose agent certificates are admitted automatically (repeatable; env: files separated by commas)")
          .env("BMAAS_ENROLLMENT_CA")
          .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), ...value.split(",").filter((f) => f !== "")]),
      )
      .addOption(
        new Option("--dev-certs <dir>", "development PKI: created in DIR on first start, reused later (instead of the three TLS flags)").env(
          "BMAAS_DEV_CERTS",
        ),
      )
      .addOption(
        new Option("--max-request-bytes <n>", "largest request accepted")
          .env("BMAAS_MAX_REQUEST_BYTES")
          .argParser(positiveCount)
          .default(4 * 1024 * 1024),
      )
      .addOption(
        new Option("--shutdown-grace <seconds>", "time in-flight RPCs get to finish on SIGTERM")
          .env("BMAAS_SHUTDOWN_GRACE")
          .argParser(seconds)
          .default(10),
      )
      .addOption(
        new Option("--agent-heartbeat-interval <seconds>", "interval suggested to agents in every answer (0: none, agents keep their own)")
          .env("BMAAS_AGENT_HEARTBEAT_INTERVAL")
          .argParser(seconds)
          .default(0),
      )
      .addOption(new Option("--metrics-listen <addr>", 'Prometheus /metrics listener ("" to disable)').env("BMAAS_METRICS_LISTEN").default("127.0.0.1:4243"))
      .addOption(booleanOption("--metrics-mtls", "serve metrics over HTTPS behind the operator mTLS", "BMAAS_METRICS_MTLS"))
      .addOption(
        new Option("--web-listen <addr>", 'read-only fleet web view: plain HTTP on loopback, else HTTPS + operator client certificate ("" to disable)')
          .env("BMAAS_WEB_LISTEN")
          .default("127.0.0.1:4244"),
      )
      .addOption(
        new Option("--fleet-stats-refresh <seconds>", "how often the fleet gauges are recomputed")
          .env("BMAAS_FLEET_STATS_REFRESH")
          .argParser(seconds)
          .default(30),
      )
      .addOption(
        new Option("--stale-sweep-interval <seconds>", "how often machines that stopped heartbeating are recorded as stale (0: never)")
          .env("BMAAS_STALE_SWEEP_INTERVAL")
          .argParser(seconds)
          .default(30),
      )
      .addOption(
        new Option("--admission-pending-expiry <seconds>", "a pending admission request whose agent has not asked for this long is forgotten (0: never)")
          .env("BMAAS_ADMISSION_PENDING_EXPIRY")
          .argParser(seconds)
          .default(DEFAULT_PENDING_EXPIRY_MS / 1000),
      )
      .addOption(
        new Option("--memory-trim-interval <seconds>", "how often memory freed inside the process is given back to the OS (glibc malloc_trim; 0: never)")
          .env("BMAAS_MEMORY_TRIM_INTERVAL")
          .argParser(seconds)
          .default(10),
      )
      .addOption(
        new Option("--watch-max-queued <events>", "events a WatchMachines client may fall behind before it is dropped")
          .env("BMAAS_WATCH_MAX_QUEUED")
          .argParser(count)
          .default(1000),
      )
      .addOption(
        new Option("--agent-max-request-bytes <n>", "largest agent request (a hardware report of a large machine is ~20 KiB)")
          .env("BMAAS_AGENT_MAX_REQUEST_BYTES")
          .argParser(positiveCount)
          .default(256 * 1024),
      )
      .addOption(
        new Option("--agent-threads <n>", "threads doing the agent listener's TLS and HTTP/2, the main thread included (default: 1 below 4 cores, else half the cores, at most 4)")
          .env("BMAAS_AGENT_THREADS")
          // Each thread is a V8 heap and a malloc arena (~65–130 MiB with 10,000 connections).
          .argParser(numberArg({ min: 1, max: 16, integer: true }))
          .default(defaultAgentThreads()),
      )
      .addOption(new Option("--agent-max-connections <n>", "open agent connections at most").env("BMAAS_AGENT_MAX_CONNECTIONS").argParser(positiveCount).default(60_000))
      .addOption(
        new Option("--agent-max-connections-per-ip <n>", "open agent connections from one source address at most")
          .env("BMAAS_AGENT_MAX_CONNECTIONS_PER_IP")
          .argParser(positiveCount)
          .default(4096),
      )
      .addOption(
        new Option("--agent-max-handshakes <n>", "agent connections in their TLS handshake at once; more wait, unread, for a slot")
          .env("BMAAS_AGENT_MAX_HANDSHAKES")
          .argParser(positiveCount)
          .default(DEFAULT_CONNECTION_LIMITS.maxHandshakes),
      )
      .addOption(
        new Option("--agent-handshake-timeout <seconds>", "absolute time for a TLS handshake; an unauthenticated connection lives no longer than its wait for a slot plus this")
          .env("BMAAS_AGENT_HANDSHAKE_TIMEOUT")
          .argParser(seconds)
          .default(10),
      )
      .addOption(
        new Option("--agent-handshake-wait <seconds>", "how long a connection may wait, unread, for a handshake slot (past --agent-max-handshakes)")
          .env("BMAAS_AGENT_HANDSHAKE_WAIT")
          .argParser(seconds)
          .default(20),
      )
      .addOption(
        new Option(
          "--agent-client-certificate-check <how>",
          "how a leaf sent with unrelated certificates is refused: native (in OpenSSL's handshake; falls back to tap when not built) or tap (decrypting the handshake in JavaScript, ~37% of the heartbeat ceiling)",
        )
          .env("BMAAS_AGENT_CLIENT_CERTIFICATE_CHECK")
          .choices(["native", "tap"])
          .default("native"),
      )
      .addOption(
        new Option(
          "--tls-ed25519-decoder <how>",
          "how OpenSSL decodes agent certificates' Ed25519 keys: legacy (its built-in Ed25519 method, skipping OpenSSL 3.0's decoder setup: ~10% of a handshake's CPU; process-wide) or provider (OpenSSL's default)",
        )
          .env("BMAAS_TLS_ED25519_DECODER")
          .choices(["legacy", "provider"])
          .default("legacy"),
      )
      .addOption(
        new Option("--agent-idle-timeout <seconds>", "an agent connection without a call for this long is closed")
          .env("BMAAS_AGENT_IDLE_TIMEOUT")
          .argParser(seconds)
          .default(600),
      )
      .addOption(
        new Option("--agent-max-connection-age <seconds>", "agent connections are closed gracefully after this long, ±10% (0: never)")
          .env("BMAAS_AGENT_MAX_CONNECTION_AGE")
          .argParser(seconds)
          .default(0),
      )
      .addOption(
        new Option("--agent-keepalive <seconds>", "a quiet agent connection is pinged this often and dropped if it does not answer in 20 s")
          .env("BMAAS_AGENT_KEEPALIVE")
          .argParser(seconds)
          .default(120),
      )
      .addOption(
        new Option("--agent-max-inflight <n>", "heartbeats queued or being written at once; more are refused UNAVAILABLE with pushback")
          .env("BMAAS_AGENT_MAX_INFLIGHT")
          .argParser(positiveCount)
          .default(2048),
      )
      .addOption(
        new Option("--heartbeat-batches <n>", "group-commit batches in the database at once at most: one runs while batches are quick, another starts beside one slower than twice the recent batch time (1: never)")
          .env("BMAAS_HEARTBEAT_BATCHES")
          .argParser(positiveCount)
          .default(2),
      )
      .addOption(
        new Option("--heartbeat-budget <per-second>", "heartbeats per second the server takes; paces the fleet through suggested_interval (0: no budget)")
          .env("BMAAS_HEARTBEAT_BUDGET")
          .argParser(count)
          .default(0),
      )
      .addOption(
        new Option("--log-level <level>", "log level").env("BMAAS_LOG_LEVEL").choices(["trace", "debug", "info", "warn", "error", "silent"]).default("info"),
      );
  },

  /**
   * Checks the flags and loads the certificates; takes from env the sockets a
   * supervisor passed (removing its variables); throws a one-line reason.
   */
  async resolve(flags: ServerFlags, env: NodeJS.ProcessEnv = process.env): Promise<ServerConfigValues> {
    parseListenAddress(flags.publicListen);
    parseListenAddress(flags.internalListen);
    if (flags.metricsListen) parseListenAddress(flags.metricsListen);
    if (flags.webListen) parseListenAddress(flags.webListen);
    const files = [flags.tlsCert, flags.tlsKey, flags.operatorCa];
    const agentSocketFd = inheritedAgentSocket(env);
    const base = {
      publicListenAddress: flags.publicListen,
      internalListenAddress: flags.internalListen,
      maxRequestBytes: flags.maxRequestBytes,
      shutdownGraceMs: flags.shutdownGrace * 1000,
      agentHeartbeatIntervalMs: flags.agentHeartbeatInterval * 1000,
      ...(flags.metricsListen && { metricsListenAddress: flags.metricsListen }),
      metricsMtls: !!flags.metricsMtls,
      ...(flags.webListen && { webListenAddress: flags.webListen }),
      fleetStatsRefreshMs: Math.max(1, flags.fleetStatsRefresh) * 1000,
      staleSweepIntervalMs: flags.staleSweepInterval * 1000,
      admissionPendingExpiryMs: flags.admissionPendingExpiry * 1000,
      memoryTrimIntervalMs: flags.memoryTrimInterval * 1000,
      watchMaxQueued: Math.max(1, flags.watchMaxQueued),
      agentMaxRequestBytes: flags.agentMaxRequestBytes,
      agentThreads: flags.agentThreads,
      ...(agentSocketFd !== undefined && { agentSocketFd }),
      agentLimits: {
        maxConnections: flags.agentMaxConnections,
        maxConnectionsPerAddress: flags.agentMaxConnectionsPerIp,
        maxHandshakes: flags.agentMaxHandshakes,
        handshakeTimeoutMs: Math.max(0.1, flags.agentHandshakeTimeout) * 1000,
        waitTimeoutMs: Math.max(0.1, flags.agentHandshakeWait) * 1000,
        clientCertificateCheck: flags.agentClientCertificateCheck,
        ed25519Decoder: flags.tlsEd25519Decoder,
        idleTimeoutMs: Math.max(1, flags.agentIdleTimeout) * 1000,
        maxConnectionAgeMs: flags.agentMaxConnectionAge * 1000,
        keepaliveMs: Math.max(1, flags.agentKeepalive) * 1000,
      },
      heartbeatQueue: { maxInflight: flags.agentMaxInflight, concurrency: flags.heartbeatBatches, budgetPerSecond: flags.heartbeatBudget },
      enrollmentCas: (flags.enrollmentCa ?? []).flatMap((f) => parseEnrollmentCas(f, readPem("--enrollment-ca", f))),
      logLevel: flags.logLevel,
    };
    if (flags.devCerts) {
      if (files.some((f) => f)) throw new Error("use either --dev-certs or --tls-cert/--tls-key/--operator-ca, not both");
      const dev = await loadOrCreateDevCerts(resolve(flags.devCerts));
      return {
        ...base,
        serverCert: dev.server.cert,
        serverKey: dev.server.key,
        operatorCa: dev.ca.cert,
        devCerts: { dir: dev.dir, created: dev.created },
      };
    }
    if (!files.every((f) => f)) {
      throw new Error("TLS is required: give --tls-cert, --tls-key and --operator-ca, or --dev-certs DIR for development");
    }
    return {
      ...base,
      serverCert: readPem("--tls-cert", flags.tlsCert!),
      serverKey: readPem("--tls-key", flags.tlsKey!),
      operatorCa: readPem("--operator-ca", flags.operatorCa!),
    };
  },
};
