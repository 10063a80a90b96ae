import type { CompiledQuery, IsolationLevel, Kysely, QueryResult } from "kysely";
import type { PGliteWorkerClient } from "./pglite-worker-dialect.js";

// Several statements sent together. On the PGlite worker they cross the
// thread boundary in one message; on PostgreSQL they run in order on one
// pooled connection (one round trip each: pg has no pipelining).

const workers = new WeakMap<object, PGliteWorkerClient>();

/** Tells executeBatch that db runs on this PGlite worker; openBmdb calls it. */
export function registerPGliteWorker<DB>(db: Kysely<DB>, client: PGliteWorkerClient): void {
  workers.set(db, client);
}

export interface BatchOptions {
  /** Run the batch as one transaction at this isolation level (rolled back on the first error). */
  transaction?: IsolationLevel;
}

/**
 * Runs queries in order on one connection and returns one result each. Stops
 * at the first failing statement and rejects with its error (on PGlite a
 * PGliteQueryError with statementIndex). Without options.transaction each
 * statement commits on its own, so the ones before a failure stay.
 *
 * db must be the handle openBmdb made (or any Kysely: it then falls back to
 * one statement at a time), not a transaction.
 */
export async function executeBatch<DB>(db: Kysely<DB>, queries: readonly CompiledQuery[], options: BatchOptions = {}): Promise<QueryResult<unknown>[]> {
  if (db.isTransaction) throw new Error("executeBatch runs on the database handle, not inside a transaction");
  const worker = workers.get(db);
  if (worker) {
    const release = await worker.lock.acquire();
    try {
      const results = await worker.executeMany(
        queries.map((q) => ({ sql: q.sql, params: q.parameters })),
        options.transaction ? { isolationLevel: options.transaction } : undefined,
      );
      return results.map((r) => ({
        rows: r.rows,
        ...(r.affectedRows !== undefined ? { numAffectedRows: BigInt(r.affectedRows) } : {}),
      }));
    } finally {
      release();
    }
  }
  const level = options.transaction;
  if (level) {
    return db.transaction().setIsolationLevel(level).execute(async (trx) => {
      const out: QueryResult<unknown>[] = [];
      for (const q of queries) out.push(await trx.executeQuery(q));
      return out;
    });
  }
  return db.connection().execute(async (c) => {
    const out: QueryResult<unknown>[] = [];
    for (const q of queries) out.push(await c.executeQuery(q));
    return out;
  });
}

/** The PGlite worker db runs on, if it does (tests use it to crash the worker). */
export function pgliteWorkerOf<DB>(db: Kysely<DB>): PGliteWorkerClient | undefined {
  return workers.get(db);
}
