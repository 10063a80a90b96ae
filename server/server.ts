import * as grpc from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { DescFile } from "@bufbuild/protobuf";
import { ReflectionService } from "@grpc/reflection";
import { loadSync } from "@grpc/proto-loader";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import type { Server as NetServer } from "node:net";
import type { Logger } from "pino";
import type { Bmdb } from "../bmdb/index.js";
import { file_bmaas_operator_v1_operator, OperatorService } from "../gen/bmaas/operator/v1/operator_pb.js";
import { AgentCallback } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { HEARTBEAT_PATHS, heartbeatHandler } from "./agent-callback-service.js";
import { listenForAgents, type AgentListener, type AgentListenerLimits } from "./agent-listener.js";
import type { ConnectionCounts } from "./agent-connections.js";
import { DEFAULT_QUEUE_OPTIONS, HeartbeatQueue, type HeartbeatQueueOptions } from "./heartbeat-queue.js";
import { startBackgroundJob, type BackgroundJob } from "./background-job.js";
import { implement, serviceDefinition } from "../lib/grpc-adapter.js";
import { boundAddress, listen, parseListenAddress, stopListening } from "./listen.js";
import { operatorHandlers } from "./operator-service.js";
import { ServerMetrics } from "./metrics.js";
import { listenForMetrics } from "./metrics-listener.js";
import { statusMapper } from "./rpc-error.js";
import { startWebView, type WebView } from "./web/web-view.js";

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
  /** Larger operator requests are refused with RESOURCE_EXHAUSTED before any handler runs. */
  maxRequestBytes: number;
  /** Larger agent requests are refused with RESOURCE_EXHAUSTED before their body is read (default 256 KiB). */
  agentMaxRequestBytes?: number;
  /** Connection and stream limits of the agent listener (see README "Security model"). */
  agentLimits?: Partial<AgentListenerLimits>;
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
  /** Events a watcher may fall behind before it is dropped. */
  watchMaxQueued?: number;
  bmdb: Bmdb;
  logger: Logger;
}

/** Every file the internal listener describes through reflection, imports included. */
function reflectionFiles(...roots: DescFile[]): Uint8Array[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.set(f.name, f);
    f.dependencies.forEach(visit);
  };
  roots.forEach(visit);
  return [...seen.values()].map((f) => toBinary(FileDescriptorProtoSchema, f.proto));
}

/**
 * A running server: the public agent listener and the internal operator
 * listener over one machine database.
 */
export class BmaasServer {
  /** The web view (its url, e.g. "http://127.0.0.1:4244/"), if it runs. */
  webView: WebView | undefined;

  private constructor(
    readonly publicAddress: string,
    readonly internalAddress: string,
    /** Agent connections by state, for tests and metrics. */
    readonly agentConnections: ConnectionCounts,
    readonly heartbeats: HeartbeatQueue,
    private readonly agents: AgentListener,
    private readonly grpcServers: grpc.Server[],
    private readonly listeners: NetServer[],
    private readonly health: HealthImplementation,
    private readonly options: ServerOptions,
    readonly metrics: ServerMetrics,
    /** Where Prometheus scrapes, if a metrics listener runs. */
    readonly metricsAddress: string | undefined,
    private readonly stopping: AbortController,
    /** Periodic work to stop with the server. */
    private readonly jobs: BackgroundJob[],
  ) {}

  static async start(options: ServerOptions): Promise<BmaasServer> {
    const { bmdb, logger } = options;
    const toStatus = statusMapper(logger);
    const metrics = new ServerMetrics(bmdb, logger);
    const observe = metrics.observe.bind(metrics);
    const stopping = new AbortController();

    const listeners: NetServer[] = [];
    let agents: AgentListener | undefined;
    let web: WebView | undefined;
    try {
      let connected = () => 0;
      const queue = new HeartbeatQueue(bmdb, { ...DEFAULT_QUEUE_OPTIONS, ...options.heartbeatQueue }, () => connected());
      const observeHeartbeat = (code: grpc.status, seconds: number) => observe(AgentCallback.typeName, "Heartbeat", code, seconds);
      agents = await listenForAgents({
        address: parseListenAddress(options.publicListenAddress),
        cert: options.serverCert,
        key: options.serverKey,
        paths: HEARTBEAT_PATHS,
        handler: heartbeatHandler({
          queue,
          logger,
          maxRequestBytes: options.agentMaxRequestBytes ?? 256 * 1024,
          baseIntervalMs: options.agentHeartbeatIntervalMs ?? 0,
          observe: observeHeartbeat,
        }),
        onRefused: (code) => observeHeartbeat(code, 0),
        ...(options.agentLimits && { limits: options.agentLimits }),
        logger,
      });
      const agentCounts = agents.counts;
      connected = () => agentCounts.authenticated;
      metrics.watchAgents(agentCounts, queue);

      const internalGrpc = new grpc.Server({ "grpc.max_receive_message_length": options.maxRequestBytes });
      const operator = operatorHandlers({ bmdb, watch: {
          maxQueued: options.watchMaxQueued ?? 1000,
          onListenError: (err) => logger.warn({ err: (err as Error).message }, "watch: cannot listen for machine events"),
        }, stopping: stopping.signal });
      internalGrpc.addService(serviceDefinition(OperatorService), implement(OperatorService, operator, toStatus, observe));
      const health = new HealthImplementation({ "": "SERVING", [OperatorService.typeName]: "SERVING" });
      health.addToServer(internalGrpc);
      // @grpc/reflection reads descriptors from a proto-loader package
      // definition, of which it uses only each entry's fileDescriptorProtos:
      // ours come from protobuf-es, health's from its own .proto file.
      const packageDefinition = {
        ...loadSync(healthProtoPath),
        "bmaas.descriptors": { fileDescriptorProtos: reflectionFiles(file_bmaas_operator_v1_operator) },
      };
      new ReflectionService(packageDefinition as unknown as ConstructorParameters<typeof ReflectionService>[0], {
        services: [OperatorService.typeName, "grpc.health.v1.Health"],
      }).addToServer(internalGrpc);

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
      listeners.push(internal);

      let metricsAddress: string | undefined;
      if (options.metricsListenAddress) {
        const m = await listenForMetrics({
          address: options.metricsListenAddress,
          registry: metrics.registry,
          onError: (err) => logger.error({ err }, "metrics scrape failed"),
          ...(options.metricsMtls && { mtls: { cert: options.serverCert, key: options.serverKey, ca: options.operatorCa } }),
        });
        listeners.push(m);
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
        listeners.push(web.server);
      }
      metrics.start(options.fleetStatsRefreshMs ?? 30_000);

      const jobs: BackgroundJob[] = web ? [web] : [];
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
        // A sequential scan of the heartbeat table (see migrations/0003): spaced by its cost.
        jobs.push(
          startBackgroundJob(sweepMs, () =>
            bmdb.sweepStale().then(
              () => {},
              (err: unknown) => logger.warn({ err: (err as Error).message }, "stale sweep failed"),
            ),
          ),
        );
      }

      const server = new BmaasServer(
        boundAddress(agents.server),
        boundAddress(internal),
        agents.counts,
        queue,
        agents,
        [internalGrpc],
        listeners,
        health,
        options,
        metrics,
        metricsAddress,
        stopping,
        jobs,
      );
      server.webView = web;
      logger.info({ public: server.publicAddress, internal: server.internalAddress, metrics: metricsAddress, web: web?.url }, "listening");
      return server;
    } catch (error) {
      web?.stop();
      listeners.forEach((l) => l.close());
      await agents?.close(0);
      metrics.stop();
      throw error;
    }
  }

  /**
   * Stops accepting connections, lets in-flight RPCs finish (up to the grace
   * period), then closes what is left. The database is the caller's to close.
   */
  async stop(): Promise<void> {
    this.health.setStatus("", "NOT_SERVING");
    this.jobs.forEach((j) => j.stop());
    this.metrics.stop();
    // Watch streams never end by themselves: end them so shutdown can finish.
    this.stopping.abort();
    const closed = this.listeners.map(stopListening);
    const grace = this.options.shutdownGraceMs ?? 10_000;
    await Promise.all([
      this.agents.close(grace),
      ...this.grpcServers.map(
        (s) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              this.options.logger.warn("shutdown grace period over: cancelling remaining RPCs");
              s.forceShutdown();
              resolve();
            }, grace);
            timer.unref();
            s.tryShutdown(() => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    ]);
    await Promise.all(closed);
  }
}
