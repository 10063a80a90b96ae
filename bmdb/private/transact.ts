import type { Kysely, Transaction } from "kysely";
import type { Database } from "../database.js";
import { BmdbError, DatabaseUnavailableError } from "../errors.js";

/** Counters of transaction outcomes, read by metrics. */
export interface TransactionStats {
  /** Every attempt to run a transaction, first tries and retries alike. */
  attempts: number;
  /** Transactions that committed. */
  executed: number;
  /** Attempts repeated after a serialization failure. */
  retried: number;
  /** Transactions that failed for a database reason (after retries). */
  failed: number;
  /** Transactions rolled back for a domain reason (not found, conflict...). */
  rejected: number;
}

export function newTransactionStats(): TransactionStats {
  return { attempts: 0, executed: 0, retried: 0, failed: 0, rejected: 0 };
}

/** The error codes after which repeating the whole transaction can succeed. */
function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // 40001 serialization_failure: what PostgreSQL SERIALIZABLE and CockroachDB
  // return when a concurrent transaction wins. 40P01 deadlock_detected.
  return code === "40001" || code === "40P01";
}

export interface TransactOptions {
  maxAttempts: number;
}

/**
 * Runs fn in one SERIALIZABLE transaction, repeating it on serialization
 * failure up to maxAttempts times (CockroachDB requires clients to retry).
 * fn must therefore have no side effects outside the transaction.
 */
export async function transact<T>(
  db: Kysely<Database>,
  stats: TransactionStats,
  operation: string,
  options: TransactOptions,
  fn: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    stats.attempts++;
    try {
      const result = await db.transaction().setIsolationLevel("serializable").execute(fn);
      stats.executed++;
      return result;
    } catch (error) {
      if (error instanceof BmdbError) {
        stats.rejected++;
        throw error;
      }
      if (isRetryable(error) && attempt < options.maxAttempts) {
        stats.retried++;
        // Jittered backoff so that the same contenders do not collide again.
        await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
        continue;
      }
      stats.failed++;
      throw new DatabaseUnavailableError(operation, error);
    }
  }
}
