import * as grpc from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { DescFile } from "@bufbuild/protobuf";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, service as healthService } from "grpc-health-check";
import type { Server as NetServer } from "node:net";
import type { Logger } from "pino";
import type { Bmdb } from "../bmdb/index.js";
import { file_bmaas_operator_v1_operator, OperatorService } from "../gen/bmaas/operator/v1/operator_pb.js";
import { AgentCallback } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import type { EnrollmentCa } from "./enrollment-ca.js";
import { BODY_TIMEOUT_MS, HEARTBEAT_PATHS, heartbeatHandler } from "./agent-callback-service.js";
import type { AgentListenerLimits } from "./agent-listener.js";
import { listenForAgentsOnThreads, type ThreadedAgentListener } from "./agent-listener-threads.js";
import type { ConnectionCounts } from "./agent-connections.js";
import { DEFAULT_QUEUE_OPTIONS, HeartbeatQueue, type HeartbeatQueueOptions } from "./heartbeat-queue.js";
import { startBackgroundJob, type BackgroundJob } from "./background-job.js";
import { startMemoryTrim } from "./memory-trim.js";
import { implement, serviceDefinition } from "../lib/grpc-adapter.js";
import { boundAddress, listen, parseListenAddress, stopListening } from "./listen.js";
import { operatorHandlers } from "./operator-service.js";
import { ServerMetrics } from "./metrics.js";
import { listenForMetrics } from "./metrics-listener.js";
import { statusMapper } from "./rpc-error.js";
import { startWebView, type WebView } from "./web/web-view.js";

/** How long a pending admission request lives without its agent asking again: 7 days. */
export const DEFAULT_PENDING_EXPIRY_MS = 7 * 24 * 3_600_000;

export interface ServerOptions {
  /** Agent listener, e.g. ":8080". */
  publicListenAddress: string;
  /** Operator listener, e.g. ":4242". */
  internalListenAddress: string;
  /** PEM certificate and key the server presents on both listeners. */
  serverCert: string;
  serverKey: string;
  /** PEM CA that operator client certificates must chain to. */
  operatorCa: string;
  /** CAs whose agent certificates are admitted on their first heartbeat (server/enrollment-ca.ts). */
  enrollmentCas?: readonly EnrollmentCa[];
  /** Larger operator requests are refused with RESOURCE_EXHAUSTED before any handler runs. */
  maxRequestBytes: number;
  /** Larger agent requests are refused with RESOURCE_EXHAUSTED before their body is read (default 256 KiB). */
  agentMaxRequestBytes?: number;
  /** Connection and stream limits of the agent listener (see README "Security model"). */
  agentLimits?: Partial<AgentListenerLimits>;
  /** Threads doing the agent listener's TLS and HTTP/2, the main thread included (default 1; the CLI: defaultAgentThreads). */
  agentThreads?: number;
  /** A listening socket handed over by the supervisor (systemd socket activation), used instead of publicListenAddress. */
  agentSocketFd?: number;
  /** Group commit and backpressure of heartbeats: in-flight bound, batch size, budget per second. */
  heartbeatQueue?: Partial<HeartbeatQueueOptions>;
  /** Heartbeat interval suggested to agents in every answer (unset: none). */
  agentHeartbeatIntervalMs?: number;
  /** How long stop() lets in-flight RPCs finish before cutting them off. */
  shutdownGraceMs?: number;
  /** Prometheus listener (plain HTTP unless metricsMtls); unset: none. */
  metricsListenAddress?: string;
  /** Put the metrics listener behind the operator mTLS. */
  metricsMtls?: boolean;
  /** Read-only web view ("127.0.0.1:4244": plain HTTP on loopback, else HTTPS behind the operator CA); unset: none. */
  webListenAddress?: string;
  /** How often the fleet gauges are recomputed. */
  fleetStatsRefreshMs?: number;
  /** How often machines that stopped heartbeating are looked for (0: never). */
  staleSweepIntervalMs?: number;
  /** Pending admission requests whose agent has not asked for this long are forgotten (0: never). Default 7 days. */
  admissionPendingExpiryMs?: number;
  /** How often freed memory is given back to the OS (0: never; memory-trim.ts). Default 10 s. */
  memoryTrimIntervalMs?: number;
  /** Events a watcher may fall behind before it is dropped. */
  watchMaxQueued?: number;
  /**
   * The machine database, or the promise of it while it opens: the agent
   * listener then starts at once (TLS handshakes go on while PGlite starts,
   * heartbeats wait in the queue), everything else once it is open.
   */
  bmdb: Bmdb | Promise<Bmdb>;
  logger: Logger;
}

/** Every file a protobuf-es file descriptor needs, itself and its imports, serialized. */
function fileDescriptorProtos(...roots: DescFile[]): Buffer[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.set(f.name, f);
    f.dependencies.forEach(visit);
  };
  roots.forEach(visit);
  return [...seen.values()].map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
}

/**
 * What @grpc/reflection describes: it takes a proto-loader package
 * definition, of which it reads only each entry's fileDescriptorProtos. Ours
 * come from the generated protobuf-es descriptors; health's from
 * grpc-health-check's own service definition (every method's message types
 * carry their file's descriptors). So no .proto file is loaded at start.
 */
function reflectedFiles(): ConstructorParameters<typeof ReflectionService>[0] {
  const entry = (files: Buffer[]) => ({ format: "Protocol Buffer 3 DescriptorProto" as const, type: {}, fileDescriptorProtos: files });
  return {
    "bmaas.operator.v1": entry(fileDescriptorProtos(file_bmaas_operator_v1_operator)),
    "grpc.health.v1": entry(Object.values(healthService).flatMap((m) => [...m.requestType.fileDescriptorProtos, ...m.responseType.fileDescriptorProtos])),
  };
}

/** Everything a running server owns, by name. */
interface ServerParts {
  publicAddress: string;
  internalAddress: string;
  agents: ThreadedAgentListener;
  heartbeats: HeartbeatQueue;
  /** The operator service; it has no port of its own, the internal listener injects its connections. */
  internalGrpc: grpc.Server;
  /** The internal listener, and the metrics listener if one runs. */
  listeners: NetServer[];
  health: HealthImplementation;
  metrics: ServerMetrics;
  metricsAddress: string | undefined;
  /** The read-only web view, if it runs (its listener is in listeners, its stop in jobs). */
  webView: WebView | undefined;
  /** Aborted on stop: ends watch streams, which never end by themselves. */
  stopping: AbortController;
  /** Periodic work to stop with the server. */
  jobs: BackgroundJob[];
  options: ServerOptions;
}

/** What can be running, whether start() got that far or not. */
type Running = Pick<ServerParts, "listeners" | "metrics" | "stopping" | "jobs"> & Partial<Pick<ServerParts, "agents" | "internalGrpc">>;

/**
 * Stops everything in r: background jobs, watch streams, listeners, agent
 * connections and the operator service, letting RPCs in flight finish for up
 * to graceMs. stop() and a failed start() both end here, so a start that
 * failed half-way leaves nothing behind.
 */
async function shutDown(r: Running, graceMs: number, onGraceOver: () => void): Promise<void> {
  r.jobs.forEach((j) => j.stop());
  r.metrics.stop();
  r.stopping.abort();
  const closed = r.listeners.map(stopListening);
  await Promise.all([r.agents?.close(graceMs), r.internalGrpc && shutDownGrpc(r.internalGrpc, graceMs, onGraceOver)]);
  await Promise.all(closed);
}

function shutDownGrpc(s: grpc.Server, graceMs: number, onGraceOver: () => void): Promise<void> {
  if (graceMs <= 0) {
    s.forceShutdown();
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      onGraceOver();
      s.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    s.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * A running server: the public agent listener and the internal operator
 * listener over one machine database. The database is the caller's: it
 * opens it before start() and closes it after stop() — or after a failed
 * start(), which has already closed everything it had started itself.
 */
export class BmaasServer {
  readonly publicAddress: string;
  readonly internalAddress: string;
  /** Agent connections by state, for tests and metrics. */
  readonly agentConnections: ConnectionCounts;
  /** The same, each agent listener thread's own (the main thread's first). */
  readonly agentConnectionsByThread: readonly ConnectionCounts[];
  readonly heartbeats: HeartbeatQueue;
  readonly metrics: ServerMetrics;
  /** Where Prometheus scrapes, if a metrics listener runs. */
  readonly metricsAddress: string | undefined;
  /** The web view (its url, e.g. "http://127.0.0.1:4244/"), if it runs. */
  readonly webView: WebView | undefined;
  readonly #parts: ServerParts;

  private constructor(parts: ServerParts) {
    this.#parts = parts;
    this.publicAddress = parts.publicAddress;
    this.internalAddress = parts.internalAddress;
    this.agentConnections = parts.agents.counts;
    this.agentConnectionsByThread = parts.agents.byThread;
    this.heartbeats = parts.heartbeats;
    this.metrics = parts.metrics;
    this.metricsAddress = parts.metricsAddress;
    this.webView = parts.webView;
  }

  static async start(options: ServerOptions): Promise<BmaasServer> {
    const { logger } = options;
    const toStatus = statusMapper(logger);
    const metrics = new ServerMetrics(logger);
    const observe = metrics.observe.bind(metrics);
    // What is running so far; on any failure below all of it is shut down.
    const running: Running = { listeners: [], metrics, stopping: new AbortController(), jobs: [] };
    let web: WebView | undefined;
    const opening = Promise.resolve(options.bmdb);
    // Handled by the await below; a listen failure must not leave it unhandled.
    opening.catch(() => {});
    try {
      let connected = () => 0;
      const queue = new HeartbeatQueue(opening, { ...DEFAULT_QUEUE_OPTIONS, ...options.heartbeatQueue }, () => connected());
      const observeHeartbeat = (code: grpc.status, seconds: number) => observe(AgentCallback.typeName, "Heartbeat", code, seconds);
      const agentMaxRequestBytes = options.agentMaxRequestBytes ?? 256 * 1024;
      const agents = (running.agents = await listenForAgentsOnThreads({
        threads: options.agentThreads ?? 1,
        ...(options.agentSocketFd !== undefined && { inheritedFd: options.agentSocketFd }),
        maxRequestBytes: agentMaxRequestBytes,
        bodyTimeoutMs: BODY_TIMEOUT_MS,
        address: parseListenAddress(options.publicListenAddress),
        cert: options.serverCert,
        key: options.serverKey,
        enrollmentCas: options.enrollmentCas ?? [],
        paths: HEARTBEAT_PATHS,
        handler: heartbeatHandler({
          queue,
          logger,
          maxRequestBytes: agentMaxRequestBytes,
          baseIntervalMs: options.agentHeartbeatIntervalMs ?? 0,
          observe: observeHeartbeat,
          onRefusal: (r) => metrics.admission.refused(r),
          onEnrolled: () => metrics.admission.decided({ decision: "accepted", via: "enrollment_ca" }),
        }),
        onRefused: (code) => observeHeartbeat(code, 0),
        ...(options.agentLimits && { limits: options.agentLimits }),
        logger,
      }));
      const agentCounts = agents.counts;
      connected = () => agentCounts.authenticated;
      // A restarted server's fleet reconnects at once. Opening PGlite (WASM
      // compile, recovery) takes seconds on its worker thread: the handshakes
      // (main thread) overlap it instead of waiting behind it, and agents are
      // not sent into back-off by refused connections meanwhile.
      const inherited = options.agentSocketFd !== undefined && { inheritedFd: options.agentSocketFd };
      logger.info({ public: boundAddress(agents.server), threads: agents.threads, ...inherited }, "agent listener open");
      const bmdb = await opening;
      metrics.watchDatabase(bmdb);
      metrics.watchAgents(agentCounts, queue);

      const internalGrpc = (running.internalGrpc = new grpc.Server({ "grpc.max_receive_message_length": options.maxRequestBytes }));
      const operator = operatorHandlers({ bmdb, watch: {
          maxQueued: options.watchMaxQueued ?? 1000,
          onListenError: (err) => logger.warn({ err: (err as Error).message }, "watch: cannot listen for machine events"),
        }, stopping: running.stopping.signal, onDecision: (d, n) => metrics.admission.decided(d, n) });
      internalGrpc.addService(serviceDefinition(OperatorService), implement(OperatorService, operator, toStatus, observe));
      const health = new HealthImplementation({ "": "SERVING", [OperatorService.typeName]: "SERVING" });
      health.addToServer(internalGrpc);
      new ReflectionService(reflectedFiles(), { services: [OperatorService.typeName, "grpc.health.v1.Health"] }).addToServer(internalGrpc);

      // mTLS: the handshake itself fails for clients without a certificate
      // from the operator CA, before any RPC.
      const operatorCredentials = grpc.ServerCredentials.createSsl(
        Buffer.from(options.operatorCa),
        [{ private_key: Buffer.from(options.serverKey), cert_chain: Buffer.from(options.serverCert) }],
        true,
      );
      const injector = internalGrpc.createConnectionInjector(operatorCredentials);
      const internal = await listen(parseListenAddress(options.internalListenAddress), "operators", (socket) =>
        injector.injectConnection(socket),
      );
      running.listeners.push(internal);

      let metricsAddress: string | undefined;
      if (options.metricsListenAddress) {
        const m = await listenForMetrics({
          address: options.metricsListenAddress,
          registry: metrics.registry,
          onError: (err) => logger.error({ err }, "metrics scrape failed"),
          ...(options.metricsMtls && { mtls: { cert: options.serverCert, key: options.serverKey, ca: options.operatorCa } }),
        });
        running.listeners.push(m);
        metricsAddress = boundAddress(m);
      }
      if (options.webListenAddress) {
        web = await startWebView({
          address: options.webListenAddress,
          tls: { cert: options.serverCert, key: options.serverKey, ca: options.operatorCa },
          bmdb,
          heartbeatsTaken: () => queue.counters.batchedHeartbeats + queue.counters.single,
          maxQueued: options.watchMaxQueued ?? 1000,
          logger,
        });
        running.listeners.push(web.server);
        running.jobs.push(web);
      }
      metrics.start(options.fleetStatsRefreshMs ?? 30_000);

      const { jobs } = running;
      // Ready only while it can serve: health follows the database breaker.
      let serving = true;
      const readiness = setInterval(() => {
        if (bmdb.databaseUp === serving) return;
        serving = bmdb.databaseUp;
        const status = serving ? "SERVING" : "NOT_SERVING";
        health.setStatus("", status);
        health.setStatus(OperatorService.typeName, status);
      }, 250);
      readiness.unref();
      jobs.push({ stop: () => clearInterval(readiness) });
      const sweepMs = options.staleSweepIntervalMs ?? 30_000;
      if (sweepMs > 0) {
        // A sequential scan of the agents' rows, which hold the heartbeats (migrations/0003, 0008): spaced by its cost.
        // The first sweep waits one freshness window after start: a machine is
        // stale when it was silent for that long while a server listened. Swept
        // at once, a restart after a longer outage would record every machine
        // of the fleet as stale (a history row and a notification each), and
        // seconds later as resumed when its agent reconnected.
        jobs.push(
          startBackgroundJob(
            sweepMs,
            () =>
              bmdb.sweepStale().then(
                () => {},
                (err: unknown) => logger.warn({ err: (err as Error).message }, "stale sweep failed"),
              ),
            { firstDelayMs: bmdb.thresholds.heartbeatFreshMs },
          ),
        );
      }

      const expiryMs = options.admissionPendingExpiryMs ?? DEFAULT_PENDING_EXPIRY_MS;
      if (expiryMs > 0) {
        // Looked for a hundred times per expiry age (at most hourly, at most
        // every second): a request outlives its age by 1% at most. The scan is
        // of admission requests only, which are bounded. The first look waits
        // one period: after an outage, agents still asking refresh their
        // requests with their next heartbeat.
        const everyMs = Math.min(3_600_000, Math.max(1000, expiryMs / 100));
        jobs.push(
          startBackgroundJob(everyMs, () =>
            bmdb.expirePending(expiryMs).then(
              (expired) => {
                metrics.admission.expired(expired.length);
                if (expired.length) logger.info({ expired: expired.length }, "pending admission requests expired");
              },
              (err: unknown) => logger.warn({ err: (err as Error).message }, "expiring pending admission requests failed"),
            ),
            { firstDelayMs: everyMs },
          ),
        );
      }

      const trim = startMemoryTrim(options.memoryTrimIntervalMs ?? 10_000, logger);
      if (trim) jobs.push(trim);

      const server = new BmaasServer({
        publicAddress: boundAddress(agents.server),
        internalAddress: boundAddress(internal),
        agents,
        heartbeats: queue,
        internalGrpc,
        listeners: running.listeners,
        health,
        metrics,
        metricsAddress,
        webView: web,
        stopping: running.stopping,
        jobs,
        options,
      });
      logger.info({ public: server.publicAddress, internal: server.internalAddress, metrics: metricsAddress, web: web?.url }, "listening");
      return server;
    } catch (error) {
      await shutDown(running, 0, () => {}).catch((err: unknown) => logger.warn({ err: (err as Error).message }, "cleanup after a failed start failed"));
      throw error;
    }
  }

  /**
   * Stops accepting connections, lets in-flight RPCs finish (up to the grace
   * period), then closes what is left. The database is the caller's to close.
   */
  async stop(): Promise<void> {
    const { health, options } = this.#parts;
    health.setStatus("", "NOT_SERVING");
    await shutDown(this.#parts, options.shutdownGraceMs ?? 10_000, () =>
      options.logger.warn("shutdown grace period over: cancelling remaining RPCs"),
    );
  }
}
