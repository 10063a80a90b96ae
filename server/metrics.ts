import * as grpc from "@grpc/grpc-js";
import { AdmissionMetrics } from "./admission-metrics.js";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Logger } from "pino";
import type { Bmdb, TransactionStats } from "../bmdb/index.js";
import type { ConnectionCounts } from "./agent-connections.js";
import { startBackgroundJob, type BackgroundJob } from "./background-job.js";
import type { BatchObserver, QueueCounters } from "./heartbeat-queue.js";

// Prometheus metrics: transaction outcomes read from bmdb's counters, RPC
// latency and heartbeat results observed at the gRPC edge, fleet gauges
// refreshed on an interval (a scrape never runs the fleet query), and Node's
// process metrics.

const HEARTBEAT_PATHS = new Set(["cloud.bmaas.server.api.AgentCallback", "cloud.agent.api.AgentCallback"]);

/** A counter mirroring a monotonically growing number kept elsewhere. */
function mirrorCounter(registry: Registry, name: string, help: string, read: () => number): void {
  let seen = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

/** prom-client default metrics whose collection is O(open handles): not served. */
export const PER_HANDLE_DEFAULT_METRICS = [
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "process_open_fds",
] as const;

export class ServerMetrics {
  readonly registry = new Registry();
  readonly admission = new AdmissionMetrics(this.registry);
  readonly #rpcSeconds: Histogram<"service" | "method" | "code">;
  readonly #heartbeats: Counter<"code">;
  readonly #fleet: Gauge<"state">;
  readonly #hwNodes: Gauge<"provider" | "location">;
  readonly #hwThreads: Gauge<"provider" | "location">;
  readonly #hwMemory: Gauge<"provider" | "location">;
  readonly #fleetAge: Gauge;
  #job: BackgroundJob | undefined;
  // The metrics of each (service, method, code), bound once: labelling per
  // call hashed the labels every time, ~4% of the main thread at 1,000 heartbeats/s.
  readonly #bound = new Map<string, { seconds: { observe(v: number): void }; heartbeats?: { inc(): void } }>();
  #refreshedAt = 0;
  /** Set by watchDatabase once the database is open (the agent listener starts before). */
  #bmdb: Bmdb | undefined;

  constructor(private readonly logger: Logger) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    // Without those of prom-client's defaults that walk every handle or file
    // descriptor on each scrape: with 10,000 agents a scrape then blocked the
    // main thread for 60-100 ms (every agent's call waited), against 2-7 ms
    // without them. bmaas_agent_connections counts the agents' sockets.
    for (const name of PER_HANDLE_DEFAULT_METRICS) r.removeSingleMetric(name);
    const stats = (k: keyof TransactionStats) => () => this.#bmdb?.stats[k] ?? 0;
    mirrorCounter(r, "bmdb_transaction_executed", "Machine database transactions committed.", stats("executed"));
    mirrorCounter(r, "bmdb_transaction_retried", "Transaction attempts repeated after a serialization failure.", stats("retried"));
    mirrorCounter(r, "bmdb_transaction_failed", "Transactions that failed for a database reason, after retries.", stats("failed"));
    mirrorCounter(r, "bmdb_transaction_rejected", "Transactions rolled back for a domain reason (not found, conflict).", stats("rejected"));
    mirrorCounter(r, "bmdb_transaction_errors", "Database calls that failed for a reason that is a bug, not an outage.", stats("errors"));
    this.#rpcSeconds = new Histogram({
      name: "bmaas_rpc_duration_seconds",
      help: "gRPC handling time by service, method and status code.",
      labelNames: ["service", "method", "code"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.#heartbeats = new Counter({ name: "bmaas_agent_heartbeats_total", help: "Agent heartbeats by result code.", labelNames: ["code"], registers: [r] });
    this.#fleet = new Gauge({ name: "bmaas_fleet_machines", help: "Machines by fleet state (FleetStats).", labelNames: ["state"], registers: [r] });
    const hw = (name: string, help: string) => new Gauge({ name, help, labelNames: ["provider", "location"], registers: [r] });
    this.#hwNodes = hw("bmaas_fleet_hardware_nodes", "Machines with a hardware report, by provider and location.");
    this.#hwThreads = hw("bmaas_fleet_hardware_cpu_threads", "CPU hardware threads reported, by provider and location.");
    this.#hwMemory = hw("bmaas_fleet_hardware_memory_bytes", "Installed memory reported, by provider and location.");
    this.#fleetAge = new Gauge({ name: "bmaas_fleet_stats_age_seconds", help: "Age of the fleet gauges.", registers: [r], collect: () => this.#ageNow() });
  }

  /** The database whose transaction counters and fleet gauges are exported. */
  watchDatabase(bmdb: Bmdb): void {
    this.#bmdb = bmdb;
  }

  /** Gauges and counters of the agent listener and the heartbeat queue, read at scrape time. */
  watchAgents(connections: ConnectionCounts, queue: { inflight: number; counters: QueueCounters; onBatch(o: BatchObserver): void }): void {
    const r = this.registry;
    // Where a heartbeat's time goes once admitted: the batch it rode in, from
    // the statement's start to its commit (queueing before it is the rest).
    const batchSeconds = new Histogram({
      name: "bmaas_heartbeat_batch_duration_seconds",
      help: "Group-commit batches: time from the batch statement's start to its commit.",
      // Fine below 10 ms, where batches spend their time: a large fleet's
      // cost shows as a shift of a millisecond or two.
      buckets: [0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [r],
    });
    const batchSize = new Histogram({
      name: "bmaas_heartbeat_batch_size",
      help: "Group-commit batches: heartbeats per batch.",
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers: [r],
    });
    queue.onBatch((size, seconds) => {
      batchSeconds.observe(seconds);
      batchSize.observe(size);
    });
    new Gauge({
      name: "bmaas_agent_connections",
      help: "Agent connections by state (open includes the others).",
      labelNames: ["state"],
      registers: [r],
      collect() {
        this.set({ state: "open" }, connections.open);
        this.set({ state: "waiting" }, connections.waiting);
        this.set({ state: "handshaking" }, connections.handshaking);
        this.set({ state: "authenticated" }, connections.authenticated);
      },
    });
    mirrorCounter(r, "bmaas_agent_connections_refused_total", "Connections closed at accept by a connection cap.", () => connections.refusedAtAccept);
    mirrorCounter(r, "bmaas_agent_handshake_failures_total", "Agent TLS handshakes that failed.", () => connections.handshakeFailures);
    mirrorCounter(
      r,
      "bmaas_agent_connections_abandoned_total",
      "Connections whose agent had hung up before their TLS handshake began: closed without TLS work.",
      () => connections.abandoned,
    );
    const q = queue.counters;
    mirrorCounter(r, "bmaas_heartbeat_batches_total", "Group-commit batches written.", () => q.batches);
    mirrorCounter(r, "bmaas_heartbeat_batched_total", "Heartbeats written in batches (÷ batches = mean batch size).", () => q.batchedHeartbeats);
    mirrorCounter(r, "bmaas_heartbeat_single_total", "Heartbeats with a report, written in their own transaction.", () => q.single);
    mirrorCounter(r, "bmaas_heartbeat_dropped_total", "Queued heartbeats dropped because their caller had gone.", () => q.droppedGone);
    mirrorCounter(r, "bmaas_heartbeat_refused_inflight_total", "Heartbeats refused UNAVAILABLE: too many in flight.", () => q.refusedInflight);
    mirrorCounter(r, "bmaas_heartbeat_refused_budget_total", "Heartbeats refused UNAVAILABLE: over --heartbeat-budget.", () => q.refusedBudget);
    new Gauge({
      name: "bmaas_heartbeat_inflight",
      help: "Heartbeats queued or being written.",
      registers: [r],
      collect() {
        this.set(queue.inflight);
      },
    });
  }

  #ageNow(): void {
    this.#fleetAge.set(this.#refreshedAt ? (Date.now() - this.#refreshedAt) / 1000 : -1);
  }

  /** Records one finished RPC; called from the gRPC adapter. */
  observe(service: string, method: string, code: grpc.status, seconds: number): void {
    const key = `${service}/${method}/${code}`;
    let bound = this.#bound.get(key);
    if (!bound) {
      const name = grpc.status[code] ?? String(code);
      bound = {
        seconds: this.#rpcSeconds.labels({ service, method, code: name }),
        ...(HEARTBEAT_PATHS.has(service) && { heartbeats: this.#heartbeats.labels({ code: name }) }),
      };
      this.#bound.set(key, bound);
    }
    bound.seconds.observe(seconds);
    bound.heartbeats?.inc();
  }

  /** Recomputes the fleet gauges now. */
  async refreshFleet(): Promise<void> {
    if (!this.#bmdb) return;
    const s = await this.#bmdb.fleetStats();
    const c = s.counters;
    const states: [string, number][] = [
      ["all", c.machines],
      ["provided", c.provided],
      ["heartbeating", c.heartbeating],
      ["pending_installation", c.pendingInstallation],
      ["installed", c.installed],
      ["pending_agent_start", c.pendingAgentStart],
      ["pending_recovery", c.pendingRecovery],
    ];
    for (const [state, v] of states) this.#fleet.set({ state }, v);
    this.admission.requests(s.admission);
    for (const g of [this.#hwNodes, this.#hwThreads, this.#hwMemory]) g.reset();
    for (const h of s.hardware) {
      const labels = { provider: h.provider, location: h.location };
      this.#hwNodes.set(labels, h.nodes);
      this.#hwThreads.set(labels, h.cpuThreads);
      this.#hwMemory.set(labels, Number(h.memoryBytes));
    }
    this.#refreshedAt = Date.now();
  }

  /** Refreshes the fleet gauges now and every intervalMs, slower when a refresh is costly (see ./background-job.ts). */
  start(intervalMs: number): void {
    this.#job = startBackgroundJob(intervalMs, () =>
      this.refreshFleet().catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, "fleet metrics refresh failed")),
    );
  }

  stop(): void {
    this.#job?.stop();
  }
}
