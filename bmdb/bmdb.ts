// The machine database, by concern (each file free functions over a
// TxContext, private/tx-context.ts; this file is only the facade):
//   bmdb.ts            Bmdb: options, transactions, the event source; one
//                      thin delegation per operation
//   machines.ts        create, delete, provider updates, one machine with
//                      every tag (MachineView), requireMachine
//   agents.ts          register and revoke an agent's key; the heartbeat
//                      that carries a report (one transaction)
//   admission.ts       pending requests of refused heartbeats, operator
//                      decisions, admission by enrollment CA
//   agent-requests.ts  pending and rejected keys as operators read them
//   machine-import.ts  bulk onboarding
//   heartbeat-batch.ts the plain heartbeats of many agents in one statement
//   installation.ts    installation request (operator) and report (agent)
//   history.ts         the one history writer (row + NOTIFY, rate bound for
//                      agent-caused rows), history pages, the stale sweep
//   fleet.ts           machine lists (filters, prefix search) and fleet counters
//   heartbeat-ages.ts  machines by last-heartbeat age per provider and location
//   events.ts          event kinds, NOTIFY payloads, the subscriber hub
//   open.ts            opening PostgreSQL or PGlite, migrations, the breaker
import type { Kysely } from "kysely";
import { acceptAgent, DEFAULT_ADMISSION_BOUNDS, expirePending, rejectAgent, type AdmissionBounds, type ExpiredRequest } from "./admission.js";
import { listRequests, type RequestCursor, type RequestFilter } from "./agent-requests.js";
import { registerAgent, revokeAgent, heartbeat, type HeartbeatInput, type HeartbeatResult } from "./agents.js";
import type { Database } from "./database.js";
import type { EventHub, EventListener } from "./events.js";
import { DEFAULT_THRESHOLDS, fleetStats, listMachines, type FleetStats, type FleetThresholds, type ListFilter, type MachineSummary } from "./fleet.js";
import { heartbeatAges, type HeartbeatAgeCount } from "./heartbeat-ages.js";
import { heartbeatBatch, type BatchHeartbeat, type BatchOutcome } from "./heartbeat-batch.js";
import { getHistory, SWEEP_CHUNK, sweepStale, type HistoryPage } from "./history.js";
import { setInstallationRequest } from "./installation.js";
import { createMachine, deleteMachine, getMachine, updateProvider, type CreateMachineInput, type MachineView, type ProviderUpdate } from "./machines.js";
import { importMachines, type ImportEntry, type ImportResult } from "./machine-import.js";
import { breakerFor, guarded, newTransactionStats, transact, type TransactionStats } from "./private/transact.js";
import type { TxContext } from "./private/tx-context.js";

export { AGENT_EVENTS_PER_WINDOW, type HistoryPage } from "./history.js";
export type { HeartbeatInput, HeartbeatResult } from "./agents.js";
export type { CreateMachineInput, MachineView } from "./machines.js";

/** What bmdb needs to know of the time; injectable so tests control it. */
export type Clock = () => Date;

export interface BmdbOptions {
  /** Attempts per transaction before a serialization failure is given up on. */
  maxAttempts?: number;
  clock?: Clock;
  thresholds?: FleetThresholds;
  /** Bounds on pending admission requests (admission.ts). */
  admission?: AdmissionBounds;
}

let kyselyOf: (bmdb: Bmdb) => Kysely<Database>;

/**
 * The machine database: domain operations over the tag model, each one
 * SERIALIZABLE transaction. Callers see neither SQL nor database errors, only
 * results and the errors of ./errors.ts.
 */
export class Bmdb {
  readonly stats: TransactionStats = newTransactionStats();
  readonly thresholds: FleetThresholds;
  readonly admissionBounds: AdmissionBounds;
  readonly #db: Kysely<Database>;
  readonly #maxAttempts: number;
  readonly #clock: Clock;
  readonly #hub: EventHub | undefined;

  static {
    kyselyOf = (bmdb) => bmdb.#db;
  }

  constructor(db: Kysely<Database>, options: BmdbOptions = {}, hub?: EventHub) {
    this.#db = db;
    this.#maxAttempts = options.maxAttempts ?? 10;
    this.#clock = options.clock ?? (() => new Date());
    this.thresholds = options.thresholds ?? DEFAULT_THRESHOLDS;
    this.admissionBounds = options.admission ?? DEFAULT_ADMISSION_BOUNDS;
    this.#hub = hub;
  }

  /**
   * Calls listener with every machine event committed from now on, by any
   * server on this database. Returns the function that unsubscribes.
   */
  subscribe(listener: EventListener): Promise<() => void> {
    if (!this.#hub) throw new Error("this database handle has no event source");
    return this.#hub.subscribe(listener);
  }

  now(): Date {
    return this.#clock();
  }

  async close(): Promise<void> {
    await this.#hub?.close();
    await this.#db.destroy();
  }

  /** Runs fn in one SERIALIZABLE transaction (retried on serialization failures), the clock read per attempt. */
  #transact<T>(operation: string, fn: (ctx: TxContext) => Promise<T>): Promise<T> {
    return transact(this.#db, this.stats, operation, { maxAttempts: this.#maxAttempts }, (trx) =>
      fn({ trx, now: this.#clock(), thresholds: this.thresholds, notify: this.#hub !== undefined }),
    );
  }

  /** Runs one autocommitted statement on the same guarded path as a transaction (breaker, retries, stats). */
  #statement<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    return guarded({ db: this.#db, stats: this.stats, breaker: breakerFor(this.#db), maxAttempts: this.#maxAttempts }, operation, fn);
  }

  /** False while the database is known to be unreachable (calls then fail at once). */
  get databaseUp(): boolean {
    return breakerFor(this.#db).up;
  }

  /**
   * Records a batch of plain heartbeats (no reports) in one statement: the
   * group-commit path. Each machine at most once per batch. Outcomes come in
   * input order; an unknown machine and a wrong key give the same answer.
   * Throws (for the whole batch) only what a single heartbeat would.
   */
  heartbeatBatch(batch: readonly BatchHeartbeat[]): Promise<BatchOutcome[]> {
    return this.#statement("heartbeatBatch", () => heartbeatBatch(this.#db, this.#clock(), this.thresholds, this.admissionBounds, batch));
  }

  /** One heartbeat with its reports, in one transaction (agents.ts). */
  heartbeat(input: HeartbeatInput): Promise<HeartbeatResult> {
    return this.#transact("heartbeat", (ctx) => heartbeat(ctx, input, this.admissionBounds));
  }

  /** Creates a machine, optionally provided by (provider, providerId), unique together. */
  createMachine(input: CreateMachineInput = {}): Promise<string> {
    return this.#transact("createMachine", (ctx) => createMachine(ctx, input));
  }

  /** Records (preauthorizes) the agent's key, replacing any older one (agents.ts). */
  registerAgent(machineId: string, publicKey: Uint8Array, by = "operator"): Promise<{ startedAt: Date; keyFingerprint: string }> {
    return this.#transact("registerAgent", (ctx) => registerAgent(ctx, machineId, publicKey, by));
  }

  /** An operator accepts a pending (or rejected) key of the machine by fingerprint prefix (admission.ts). */
  acceptAgent(machineId: string, fingerprintPrefix: string, by: string): ReturnType<typeof acceptAgent> {
    return this.#transact("acceptAgent", (ctx) => acceptAgent(ctx, machineId, fingerprintPrefix, by));
  }

  /** An operator rejects a pending key of the machine by fingerprint prefix (admission.ts). */
  rejectAgent(machineId: string, fingerprintPrefix: string, by: string, reason: string | null): ReturnType<typeof rejectAgent> {
    return this.#transact("rejectAgent", (ctx) => rejectAgent(ctx, machineId, fingerprintPrefix, by, reason));
  }

  /** Pending and rejected keys, filtered, in pages (admission.ts). */
  listAgentRequests(filter: RequestFilter, pageSize: number, after?: RequestCursor): ReturnType<typeof listRequests> {
    return this.#transact("listAgentRequests", ({ trx }) => listRequests(trx, filter, pageSize, after));
  }

  /** Creates and preauthorizes machines in bulk (machine-import.ts). */
  importMachines(entries: readonly ImportEntry[], by: string): Promise<ImportResult[]> {
    return this.#transact("importMachines", (ctx) => importMachines(ctx, entries, by));
  }

  /** Sets the machine's installation request, replacing an older one (installation.ts). */
  setInstallationRequest(machineId: string, generation: bigint, raw: Uint8Array): Promise<void> {
    return this.#transact("setInstallationRequest", (ctx) => setInstallationRequest(ctx, machineId, generation, raw));
  }

  /** Removes the agent's key and heartbeat; returns the key's fingerprint (agents.ts). */
  revokeAgent(machineId: string, by = "operator"): Promise<string> {
    return this.#transact("revokeAgent", (ctx) => revokeAgent(ctx, machineId, by));
  }

  /** Deletes the machine and every tag; its history stays. */
  deleteMachine(machineId: string): Promise<void> {
    return this.#transact("deleteMachine", (ctx) => deleteMachine(ctx, machineId));
  }

  /** Updates what the provider says of a provided machine; undefined fields stay. */
  updateProvider(machineId: string, update: ProviderUpdate): Promise<void> {
    return this.#transact("updateProvider", (ctx) => updateProvider(ctx, machineId, update));
  }

  /** A page of machines matching filter, in machine ID order after `after`. */
  listMachines(filter: ListFilter, pageSize: number, after?: string): Promise<{ machines: MachineSummary[]; nextAfter: string | undefined }> {
    return this.#transact("listMachines", ({ trx, now, thresholds }) => listMachines(trx, now, thresholds, filter, pageSize, after));
  }

  /** The fleet counters and hardware totals. */
  fleetStats(): Promise<FleetStats> {
    return this.#transact("fleetStats", ({ trx, now, thresholds }) => fleetStats(trx, now, thresholds));
  }

  /** Machines by last-heartbeat age (bounds in ms, ascending), per provider and location. */
  heartbeatAges(boundsMs: readonly number[]): Promise<HeartbeatAgeCount[]> {
    return this.#transact("heartbeatAges", ({ trx, now }) => heartbeatAges(trx, now, boundsMs));
  }

  /** A machine's history, newest first; works for deleted machines too. */
  getHistory(machineId: string, pageSize: number, before?: { occurredAt: Date; eventId: string }): Promise<HistoryPage> {
    return this.#transact("getHistory", (ctx) => getHistory(ctx, machineId, pageSize, before));
  }

  /**
   * Marks no-longer-fresh heartbeats stale, once each; returns those machines
   * (history.ts). In transactions of SWEEP_CHUNK machines: after an outage
   * thousands go stale at once, and one transaction for all of them would
   * hold PGlite's only connection (every heartbeat batch) for seconds.
   */
  sweepStale(): Promise<string[]> {
    return this.#inChunks("sweepStale", (ctx) => sweepStale(ctx, SWEEP_CHUNK));
  }

  /**
   * Forgets pending admission requests whose agent has not asked for maxAgeMs
   * (admission.ts); returns them. In transactions of SWEEP_CHUNK, as the sweep.
   */
  expirePending(maxAgeMs: number): Promise<ExpiredRequest[]> {
    return this.#inChunks("expirePending", (ctx) => expirePending(ctx, new Date(ctx.now.getTime() - maxAgeMs), SWEEP_CHUNK));
  }

  /** Runs a chunk of SWEEP_CHUNK rows per transaction until one comes back short; all the rows. */
  async #inChunks<T>(name: string, chunk: (ctx: TxContext) => Promise<T[]>): Promise<T[]> {
    const all: T[] = [];
    for (;;) {
      const rows = await this.#transact(name, chunk);
      all.push(...rows);
      if (rows.length < SWEEP_CHUNK) return all;
    }
  }

  /** Reads a machine with every tag. */
  getMachine(machineId: string): Promise<MachineView> {
    return this.#transact("getMachine", (ctx) => getMachine(ctx, machineId));
  }
}

/**
 * The Kysely handle under a Bmdb, for tests and benchmarks only: those of
 * bmdb's own layers (transact, the PGlite worker), schema checks, and seeding
 * a large fleet with set-based SQL. Everything else goes through Bmdb's
 * operations; index.ts does not export this.
 */
export function databaseForTests(bmdb: Bmdb): Kysely<Database> {
  return kyselyOf(bmdb);
}
