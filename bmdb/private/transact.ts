import type { Kysely, Transaction } from "kysely";
import type { Database } from "../database.js";
import { BmdbError, DatabaseUnavailableError } from "../errors.js";
import { Breaker } from "./breaker.js";
import { classifyError, describeError } from "./classify.js";

/** Counters of transaction outcomes, read by metrics. */
export interface TransactionStats {
  /** Every attempt that went to the database, first tries and retries alike. */
  attempts: number;
  /** Calls that succeeded (committed). */
  executed: number;
  /** Attempts repeated after a serialization failure. */
  retried: number;
  /**
   * Calls that failed for a database reason: connection lost or refused,
   * serialization failures past maxAttempts, or refused at once by the open
   * breaker. All of them reach callers as DatabaseUnavailableError.
   */
  failed: number;
  /** Calls rolled back for a domain reason (not found, conflict...). */
  rejected: number;
  /**
   * Calls that failed for any other reason (a bug of ours, a constraint we did
   * not expect, bad input the database refused): the error reaches callers
   * as it was thrown, not as DatabaseUnavailableError.
   */
  errors: number;
}

export function newTransactionStats(): TransactionStats {
  return { attempts: 0, executed: 0, retried: 0, failed: 0, rejected: 0, errors: 0 };
}

/**
 * Everything a database call needs besides its work: one per open database,
 * shared by every call on it.
 */
export interface TransactContext {
  readonly db: Kysely<Database>;
  readonly stats: TransactionStats;
  readonly breaker: Breaker;
  /** Attempts per call before a serialization failure is given up on. */
  readonly maxAttempts: number;
}

// The breaker belongs to the database handle, not to whoever wraps it, so
// that every Bmdb (and every context) over one Kysely shares one. openBmdb
// registers the breaker it made (with its state callback and probe); a handle
// made elsewhere gets a plain one on first use.
const breakers = new WeakMap<object, Breaker>();

/** Makes breaker the one of db; openBmdb calls it before anything runs on db. */
export function registerBreaker(db: Kysely<Database>, breaker: Breaker): void {
  breakers.set(db, breaker);
}

/** The breaker of db: the registered one, or a new one without probe or callback. */
export function breakerFor(db: Kysely<Database>): Breaker {
  let b = breakers.get(db);
  if (!b) breakers.set(db, (b = new Breaker()));
  return b;
}

export function newTransactContext(
  db: Kysely<Database>,
  options: { stats?: TransactionStats; maxAttempts?: number; breaker?: Breaker } = {},
): TransactContext {
  return {
    db,
    stats: options.stats ?? newTransactionStats(),
    breaker: options.breaker ?? breakerFor(db),
    maxAttempts: options.maxAttempts ?? 10,
  };
}

/**
 * Runs fn, which talks to the database, on the guarded path every database
 * call takes:
 * - the breaker: while the database is known to be down, fails at once with
 *   DatabaseUnavailableError without calling fn;
 * - a serialization failure (40001) or deadlock (40P01) runs fn again, up to
 *   ctx.maxAttempts in all, so fn must be one whole transaction or one
 *   statement, with no side effects outside the database;
 * - a connection-class failure opens the breaker and becomes
 *   DatabaseUnavailableError;
 * - a BmdbError (domain answer) is passed on as is, counted as rejected;
 * - anything else is passed on as is, counted in stats.errors: it is a bug
 *   (or input the database refused), not an outage.
 */
export async function guarded<T>(ctx: TransactContext, operation: string, fn: () => Promise<T>): Promise<T> {
  const { stats, breaker } = ctx;
  const ticket = breaker.admit();
  if (!ticket) {
    stats.failed++;
    throw new DatabaseUnavailableError(operation, new Error(`database is down (${breaker.lastReason || "breaker open"})`));
  }
  for (let attempt = 1; ; attempt++) {
    stats.attempts++;
    try {
      const result = await fn();
      stats.executed++;
      breaker.succeeded(ticket);
      return result;
    } catch (error) {
      if (error instanceof DatabaseUnavailableError) {
        // From a nested guarded call: already counted and reported there.
        breaker.abandoned(ticket);
        throw error;
      }
      if (error instanceof BmdbError) {
        stats.rejected++;
        breaker.succeeded(ticket);
        throw error;
      }
      const kind = classifyError(error);
      if (kind === "retry" && attempt < ctx.maxAttempts) {
        stats.retried++;
        // Jittered backoff so that the same contenders do not collide again.
        await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
        continue;
      }
      if (kind === "bug") {
        stats.errors++;
        breaker.abandoned(ticket);
        throw error;
      }
      stats.failed++;
      if (kind === "connection") breaker.failed(ticket, describeError(error));
      else if (kind === "retry") breaker.succeeded(ticket);
      else breaker.abandoned(ticket);
      throw new DatabaseUnavailableError(operation, error);
    }
  }
}

/** Runs fn in one SERIALIZABLE transaction on the guarded path (see guarded). */
export function transactIn<T>(ctx: TransactContext, operation: string, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  return guarded(ctx, operation, () => ctx.db.transaction().setIsolationLevel("serializable").execute(fn));
}

export interface TransactOptions {
  maxAttempts: number;
  /** Default: the breaker of db (breakerFor). */
  breaker?: Breaker;
}

/**
 * Runs fn in one SERIALIZABLE transaction, repeating it on serialization
 * failure up to maxAttempts times (CockroachDB requires clients to retry).
 * fn must therefore have no side effects outside the transaction. The same
 * path as transactIn, for callers that keep db and stats apart.
 */
export function transact<T>(
  db: Kysely<Database>,
  stats: TransactionStats,
  operation: string,
  options: TransactOptions,
  fn: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  return transactIn({ db, stats, breaker: options.breaker ?? breakerFor(db), maxAttempts: options.maxAttempts }, operation, fn);
}
