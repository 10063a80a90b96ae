import { Worker } from "node:worker_threads";
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
  type TransactionSettings,
} from "kysely";
import { workerEntry } from "../../lib/worker-entry.js";
import { ConnectionLostError, DriverClosedError } from "./classify.js";
import type { BatchTransaction, WorkerData, WorkerError, WorkerReply, WorkerRequest, WorkerResult, WorkerStatement } from "./pglite-worker-protocol.js";

// The one PGlite dialect of bmaas, and why it is ours rather than kysely's.
// PGlite runs PostgreSQL compiled to WASM, synchronously, on whichever thread
// calls it: in the server's own thread every statement would stall TLS
// handshakes and every other RPC (the fleet-scale work measured it). So it
// runs in a worker thread (pglite-worker.ts) and this dialect talks to it by
// postMessage. kysely's PGliteDialect (in kysely's core dialects since the
// releases after the 0.28 line we pin) cannot do that: it takes a PGlite
// instance, which lives and runs on the calling thread, and PGlite's own
// worker wrapper is for browser Web Workers. Were the worker ever dropped,
// kysely's PGliteDialect should replace this file, not a second copy of it.
//
// PGlite is one connection. kysely hands a connection to a transaction for
// its whole life, so every other query must wait until that transaction is
// done, or statements of two RPCs would interleave inside one transaction: a
// FIFO lock in the main thread does that, as before.

export class Lock {
  #tail: Promise<void> = Promise.resolve();

  acquire(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const acquired = this.#tail.then(() => release);
    this.#tail = this.#tail.then(() => held);
    return acquired;
  }
}

/** An error PGlite raised in the worker, with its SQLSTATE and details. */
export class PGliteQueryError extends Error {
  readonly code: string | undefined;
  readonly detail: string | undefined;
  readonly constraint: string | undefined;
  /** In a batch: which statement failed (statements.length: the commit). */
  readonly statementIndex: number | undefined;
  readonly fields: { readonly [key: string]: string | number };

  constructor(e: WorkerError) {
    super(e.message);
    this.name = e.name === "Error" ? "PGliteQueryError" : e.name;
    this.fields = e.fields;
    const str = (k: string) => (typeof e.fields[k] === "string" ? e.fields[k] : undefined);
    this.code = str("code");
    this.detail = str("detail");
    this.constraint = str("constraint");
    this.statementIndex = e.statementIndex;
  }
}

interface Pending {
  resolve: (results: WorkerResult[]) => void;
  reject: (error: Error) => void;
}

/**
 * One PGlite instance in a worker thread. Statements go by postMessage; a
 * worker that dies fails every pending and later statement with
 * ConnectionLostError (a connection-class error: callers get UNAVAILABLE).
 */
export class PGliteWorkerClient {
  /** Held by whoever uses the one connection (a kysely connection, LISTEN). */
  readonly lock = new Lock();
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly #channels = new Map<string, Set<(payload: string) => void>>();
  readonly #goneListeners = new Set<(reason: string) => void>();
  readonly #ready: Promise<void>;
  #nextId = 1;
  /** Set once the worker is gone (crashed) or closed: every new request fails with it. */
  #gone: Error | undefined;
  #closing: Promise<void> | undefined;
  #lastError: unknown;
  #starting = false;

  /** Starts the worker; dataDir undefined: in memory. */
  constructor(dataDir: string | undefined) {
    const data: WorkerData = { dataDir };
    // A small young generation: the worker's JavaScript is a thin loop around
    // PGlite whose garbage is short-lived result rows, and V8's default (as for
    // the main thread) ends up fully touched. Measured over 170,000 batched
    // heartbeats: the same throughput, 74 MiB less RSS (312 -> 238 MiB after a
    // memory trim).
    this.#worker = new Worker(workerEntry(new URL("./pglite-worker.js", import.meta.url)), { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    // Idle, the worker must not keep the process alive (an in-process PGlite
    // did not); it is referenced while it starts and while requests are pending.
    this.#starting = true;
    let ready!: () => void;
    let failed!: (e: Error) => void;
    this.#ready = new Promise<void>((res, rej) => ((ready = res), (failed = rej)));
    this.#ready.catch(() => {});
    this.#worker.on("message", (m: WorkerReply) => {
      switch (m.kind) {
        case "ready":
          this.#starting = false;
          if (this.#pending.size === 0) this.#worker.unref();
          ready();
          return;
        case "init-failed": {
          // Nothing will work: end the worker (kysely does not destroy a
          // driver whose init failed, so nobody else would).
          const error = new ConnectionLostError(`PGlite failed to start: ${m.error.message}`);
          this.#gone ??= error;
          this.#starting = false;
          failed(error);
          void this.#worker.terminate();
          return;
        }
        case "notification":
          for (const cb of this.#channels.get(m.channel) ?? []) cb(m.payload);
          return;
        case "done":
        case "failed": {
          const p = this.#pending.get(m.id);
          if (!p) return;
          this.#pending.delete(m.id);
          if (this.#pending.size === 0 && !this.#starting) this.#worker.unref();
          if (m.kind === "done") p.resolve(m.results);
          else p.reject(new PGliteQueryError(m.error));
          return;
        }
      }
    });
    // An uncaught exception in the worker (a WASM abort...) arrives here and
    // then as "exit": without this listener it would crash the process.
    this.#worker.on("error", (e) => (this.#lastError = e));
    this.#worker.on("messageerror", (e) => (this.#lastError = e));
    this.#worker.on("exit", (code) => {
      const closed = this.#closing !== undefined;
      const why = this.#lastError instanceof Error ? `: ${this.#lastError.message}` : ` with code ${code}`;
      const error = closed ? new DriverClosedError("the PGlite database is closed") : new ConnectionLostError(`the PGlite worker stopped${why}`);
      this.#gone ??= error;
      failed(error);
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
      if (!closed) for (const cb of this.#goneListeners) cb(error.message);
    });
  }

  /** Resolves when PGlite has started (and, on disk, recovered) in the worker. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** False once the worker crashed or was closed. */
  get alive(): boolean {
    return this.#gone === undefined;
  }

  #request(make: (id: number) => WorkerRequest): Promise<WorkerResult[]> {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = this.#nextId++;
    return new Promise<WorkerResult[]>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      if (this.#pending.size === 1) this.#worker.ref();
      try {
        this.#worker.postMessage(make(id));
      } catch (e) {
        // A parameter structured clone cannot carry (a function, a symbol): a bug.
        this.#pending.delete(id);
        if (this.#pending.size === 0 && !this.#starting) this.#worker.unref();
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /** One statement. The caller holds the lock (or accepts interleaving). */
  async query(sql: string, params: readonly unknown[]): Promise<WorkerResult> {
    const [r] = await this.#request((id) => ({ kind: "query", id, statement: { sql, params } }));
    return r ?? { rows: [], affectedRows: undefined };
  }

  /**
   * Statements in one message, run in order, stopping at the first error
   * (PGliteQueryError.statementIndex says which). With transaction, they run
   * between BEGIN and COMMIT and a failure rolls back all of them. The caller
   * holds the lock.
   */
  executeMany(statements: WorkerStatement[], transaction?: BatchTransaction): Promise<WorkerResult[]> {
    return this.#request((id) => ({ kind: "batch", id, statements, transaction: transaction ?? null }));
  }

  /** Calls cb with each NOTIFY payload on channel. Returns the function that stops it. */
  async listen(channel: string, cb: (payload: string) => void): Promise<() => Promise<void>> {
    let set = this.#channels.get(channel);
    if (!set) {
      // LISTEN is transactional: it must not run inside another caller's
      // transaction on the one connection, so it takes the lock.
      const release = await this.lock.acquire();
      try {
        await this.#request((id) => ({ kind: "listen", id, channel }));
      } finally {
        release();
      }
      set = this.#channels.get(channel) ?? new Set();
      this.#channels.set(channel, set);
    }
    set.add(cb);
    return async () => {
      const s = this.#channels.get(channel);
      if (!s?.delete(cb) || s.size > 0) return;
      this.#channels.delete(channel);
      if (this.#gone) return;
      const release = await this.lock.acquire();
      try {
        await this.#request((id) => ({ kind: "unlisten", id, channel }));
      } finally {
        release();
      }
    };
  }

  /** cb is told once if the worker dies (not when it is closed). */
  onGone(cb: (reason: string) => void): () => void {
    this.#goneListeners.add(cb);
    return () => this.#goneListeners.delete(cb);
  }

  /** Ends the worker abruptly, as a crash would (tests use it): pending and later statements fail. */
  async kill(): Promise<void> {
    this.#lastError = new Error("killed");
    await this.#worker.terminate();
  }

  /** Closes PGlite (flushing it to disk) after the statements sent before, then ends the worker. */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      if (!this.#gone) {
        await this.#request((id) => ({ kind: "close", id })).catch(() => {});
      }
      this.#gone ??= new DriverClosedError("the PGlite database is closed");
      await this.#worker.terminate();
    })());
  }
}

function queryResult<R>(r: WorkerResult): QueryResult<R> {
  return {
    rows: r.rows as R[],
    ...(r.affectedRows !== undefined ? { numAffectedRows: BigInt(r.affectedRows) } : {}),
  };
}

/** The one connection to the worker; kysely gets it while holding the lock. */
export class PGliteWorkerConnection implements DatabaseConnection {
  constructor(readonly client: PGliteWorkerClient) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    return queryResult<R>(await this.client.query(query.sql, query.parameters));
  }

  /** Several compiled queries in one thread hop; see PGliteWorkerClient.executeMany. */
  async executeMany(queries: readonly CompiledQuery[], transaction?: BatchTransaction): Promise<QueryResult<unknown>[]> {
    const results = await this.client.executeMany(
      queries.map((q) => ({ sql: q.sql, params: q.parameters })),
      transaction,
    );
    return results.map((r) => queryResult<unknown>(r));
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error("streaming is not supported on PGlite");
  }
}

class PGliteWorkerDriver implements Driver {
  readonly #connection: PGliteWorkerConnection;
  #release: (() => void) | undefined;

  constructor(private readonly client: PGliteWorkerClient) {
    this.#connection = new PGliteWorkerConnection(client);
  }

  async init(): Promise<void> {
    await this.client.ready();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    this.#release = await this.client.lock.acquire();
    return this.#connection;
  }

  async releaseConnection(): Promise<void> {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const parts = ["begin"];
    if (settings.isolationLevel) parts.push(`isolation level ${settings.isolationLevel}`);
    if (settings.accessMode) parts.push(settings.accessMode);
    await connection.executeQuery(CompiledQuery.raw(parts.join(" ")));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("commit"));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("rollback"));
  }

  async destroy(): Promise<void> {
    await this.client.close();
  }
}

/** A kysely dialect over a PGlite worker, which it closes on destroy. */
export class PGliteWorkerDialect implements Dialect {
  constructor(readonly client: PGliteWorkerClient) {}

  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PGliteWorkerDriver(this.client);
  }
  createIntrospector(db: Kysely<unknown>) {
    return new PostgresIntrospector(db);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
}
