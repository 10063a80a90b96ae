import { DatabaseUnavailableError, type BatchOutcome, type Bmdb, type HeartbeatInput, type HeartbeatResult } from "../bmdb/index.js";
import { Code, WireStatus } from "./grpc-wire.js";

// Group commit with backpressure. Plain heartbeats queue up while the previous
// batch is in the database and go in together as the next batch (one
// statement, ./bmdb/heartbeat-batch.ts): no timer, so a lone heartbeat at low
// load goes at once. Heartbeats with a hardware or installation report (rare:
// once per boot or installation) take their own transaction.
//
// Work is bounded: past maxInflight heartbeats queued or in the database, or
// past the heartbeat budget per second, a call is refused at once with
// UNAVAILABLE and a grpc-retry-pushback-ms trailer (UNAVAILABLE because it is
// the code gRPC clients treat as "retry later"; RESOURCE_EXHAUSTED stays for
// requests that are too large). A queued call whose caller has gone (cancelled,
// deadline passed) is dropped before it reaches the database.
//
// The database may still be opening when the queue is made (the server takes
// agents' TLS handshakes while PGlite starts, see server.ts): heartbeats then
// wait here, within the same bounds, and go in once it is open.

export interface HeartbeatQueueOptions {
  /** Heartbeats queued or being written at once. */
  maxInflight: number;
  /** Heartbeats per batch statement at most. */
  maxBatch: number;
  /**
   * Batches in the database at once at most (--heartbeat-batches). One runs
   * at a time while batches are quick: the heartbeats that arrive meanwhile
   * make the next batch larger, and every batch costs the main thread the
   * same (a statement, a round trip, its writes), so larger batches go
   * further. Back to back, one at a time gave PostgreSQL 8,805-9,822/s
   * against 8,030-8,138/s with two always allowed, PGlite 8,172/s against
   * 7,226/s. But one batch stuck behind a slow one (cold index pages of a
   * large fleet, a checkpoint) stalled everything: with 1,000,000 machines a
   * 654 ms back-to-back p99. So another batch may start once every running
   * one has been in the database for longer than stallMs(), up to this many.
   */
  concurrency: number;
  /** Heartbeats per second the server takes (0: no budget). */
  budgetPerSecond: number;
}

export const DEFAULT_QUEUE_OPTIONS: HeartbeatQueueOptions = { maxInflight: 2048, maxBatch: 500, concurrency: 2, budgetPerSecond: 0 };

interface Waiting {
  input: HeartbeatInput;
  live: () => boolean;
  resolve: (r: HeartbeatResult | undefined) => void;
  reject: (e: unknown) => void;
}

export interface QueueCounters {
  batches: number;
  batchedHeartbeats: number;
  single: number;
  droppedGone: number;
  refusedInflight: number;
  refusedBudget: number;
}

/** Told of every batch written: its size and how long it took in the database. */
export type BatchObserver = (size: number, seconds: number) => void;

const jitter = (ms: number) => Math.round(ms * (0.75 + Math.random() * 0.5));

export class HeartbeatQueue {
  readonly counters: QueueCounters = { batches: 0, batchedHeartbeats: 0, single: 0, droppedGone: 0, refusedInflight: 0, refusedBudget: 0 };
  #waiting: Waiting[] = [];
  #running = 0;
  #inflight = 0;
  #tokens: number;
  #refilledAt = Date.now();
  /** Recent throughput estimate (heartbeats/ms), for pushback hints. */
  #rate = 1;
  /** Recent time of a batch in the database (ms, moving average). */
  #batchMs = 1;
  /** When the youngest running batch started (performance.now()). */
  #youngestStart = 0;
  /** Re-pumps once the running batches count as stalled. */
  #stallTimer: NodeJS.Timeout | undefined;
  /** The database once open; until then batches wait. */
  #bmdb: Bmdb | undefined;
  readonly #opened: Promise<Bmdb>;
  readonly #batchObservers: BatchObserver[] = [];

  constructor(
    bmdb: Bmdb | Promise<Bmdb>,
    private readonly options: HeartbeatQueueOptions,
    /** Connected agents, for the pushback a budget gives. */
    private readonly connectedAgents: () => number,
  ) {
    this.#tokens = this.#burst();
    this.#opened = Promise.resolve(bmdb);
    this.#opened.then(
      (db) => {
        this.#bmdb = db;
        this.#pump();
      },
      (error: unknown) => {
        // The server does not start without its database; callers waiting meanwhile hear UNAVAILABLE.
        const unavailable = error instanceof DatabaseUnavailableError ? error : new DatabaseUnavailableError("open database", error);
        for (const w of this.#waiting.splice(0)) w.reject(unavailable);
      },
    );
  }

  /** Adds an observer of written batches (metrics). */
  onBatch(observer: BatchObserver): void {
    this.#batchObservers.push(observer);
  }

  get inflight(): number {
    return this.#inflight;
  }

  #burst(): number {
    return Math.max(10, this.options.budgetPerSecond / 4);
  }

  /**
   * Whether a heartbeat may go in now. Takes a budget token if so; a refusal
   * carries its pushback.
   */
  admit(): WireStatus | undefined {
    if (this.#inflight >= this.options.maxInflight) {
      this.counters.refusedInflight++;
      const drainMs = Math.min(10_000, Math.max(200, this.#inflight / this.#rate));
      return this.#refusal("server busy", drainMs);
    }
    const budget = this.options.budgetPerSecond;
    if (budget > 0) {
      const now = Date.now();
      this.#tokens = Math.min(this.#burst(), this.#tokens + ((now - this.#refilledAt) * budget) / 1000);
      this.#refilledAt = now;
      if (this.#tokens < 1) {
        this.counters.refusedBudget++;
        return this.#refusal("heartbeat budget exhausted", this.pacedIntervalMs(0));
      }
      this.#tokens -= 1;
    }
    return undefined;
  }

  #refusal(what: string, pushbackMs: number): WireStatus {
    return new WireStatus(Code.UNAVAILABLE, `${what}, retry later`, { "grpc-retry-pushback-ms": String(jitter(pushbackMs)) });
  }

  /**
   * The interval that keeps the connected fleet under the budget, never below
   * baseMs; 0 when there is neither.
   */
  pacedIntervalMs(baseMs: number): number {
    const budget = this.options.budgetPerSecond;
    const fleetMs = budget > 0 ? Math.max(1000, (this.connectedAgents() / budget) * 1000 * 1.1) : 0;
    // The operator's interval is sent as given (agents add their own jitter);
    // when the budget sets the pace, ±10% spreads the fleet out.
    if (fleetMs <= baseMs) return baseMs;
    return Math.round(fleetMs * (0.9 + Math.random() * 0.2));
  }

  /**
   * Records the heartbeat once admitted; resolves with its result once it is
   * committed, or undefined when its caller was gone before it was written.
   */
  submit(input: HeartbeatInput, live: () => boolean): Promise<HeartbeatResult | undefined> {
    this.#inflight++;
    const done = <T>(p: Promise<T>) => p.finally(() => this.#inflight--);
    // An enrollment claim may admit the key: its own transaction too (once per connection).
    if (input.hardwareReport || input.installationReport || input.enrollment) {
      this.counters.single++;
      return done(this.#opened.then((db) => db.heartbeat(input)));
    }
    return done(
      new Promise<HeartbeatResult | undefined>((resolve, reject) => {
        this.#waiting.push({ input, live, resolve, reject });
        this.#pump();
      }),
    );
  }

  /**
   * How long the running batches may take before another one starts beside
   * them: twice the recent batch time, at least 5 ms (a batch that slow is
   * an outlier, not the database's pace).
   */
  stallMs(): number {
    return Math.max(5, 2 * this.#batchMs);
  }

  #pump(): void {
    while (this.#bmdb && this.#waiting.length > 0 && this.#mayStart()) {
      const batch = this.#take();
      if (batch.length === 0) continue;
      this.#running++;
      const started = performance.now();
      this.#youngestStart = started;
      void this.#write(batch).finally(() => {
        this.#running--;
        const elapsed = performance.now() - started;
        for (const observe of this.#batchObservers) observe(batch.length, elapsed / 1000);
        const ms = Math.max(1, elapsed);
        this.#rate = 0.8 * this.#rate + 0.2 * (batch.length / ms);
        this.#batchMs = 0.8 * this.#batchMs + 0.2 * elapsed;
        this.#pump();
      });
    }
  }

  /** Whether another batch may start now; if only the stall rule says no, re-pumps when it would say yes. */
  #mayStart(): boolean {
    if (this.#running === 0) return true;
    if (this.#running >= this.options.concurrency) return false;
    const wait = this.#youngestStart + this.stallMs() - performance.now();
    if (wait <= 0) return true;
    if (!this.#stallTimer) {
      this.#stallTimer = setTimeout(() => {
        this.#stallTimer = undefined;
        this.#pump();
      }, Math.ceil(wait));
      // A pending stall check never keeps the process alive by itself.
      this.#stallTimer.unref();
    }
    return false;
  }

  /** The next batch: live callers only, each machine once (a repeat waits for the next batch). */
  #take(): Waiting[] {
    const batch: Waiting[] = [];
    const rest: Waiting[] = [];
    const machines = new Set<string>();
    for (const w of this.#waiting) {
      if (!w.live()) {
        this.counters.droppedGone++;
        w.resolve(undefined);
      } else if (batch.length >= this.options.maxBatch || machines.has(w.input.machineId)) {
        rest.push(w);
      } else {
        machines.add(w.input.machineId);
        batch.push(w);
      }
    }
    this.#waiting = rest;
    return batch;
  }

  async #write(batch: Waiting[]): Promise<void> {
    const db = this.#bmdb!;
    this.counters.batches++;
    this.counters.batchedHeartbeats += batch.length;
    let outcomes: BatchOutcome[];
    try {
      outcomes = await db.heartbeatBatch(batch.map((w) => w.input));
    } catch (error) {
      if (error instanceof DatabaseUnavailableError || batch.length === 1) {
        batch.forEach((w) => w.reject(error));
        return;
      }
      // Something in the batch broke the statement: one by one, so that only
      // the heartbeat at fault fails and its neighbours are recorded.
      await Promise.all(batch.map((w) => db.heartbeatBatch([w.input]).then(([o]) => w.resolve(o), w.reject)));
      return;
    }
    batch.forEach((w, i) => w.resolve(outcomes[i]));
  }
}
