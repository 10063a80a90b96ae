import { Option, type Command } from "commander";
import { DEFAULT_ADMISSION_BOUNDS, type OpenOptions } from "../../bmdb/index.js";
import { booleanOption, numberArg } from "../../lib/flags.js";

// bmaas-server's database flags: commander wiring, which belongs to the
// command; bmdb takes the URL and OpenOptions they become.

/** The flags that pick and tune the machine database, with env fallbacks. */
export interface BmdbFlags {
  databaseUrl?: string;
  skipMigrations?: boolean;
  dbPoolSize?: number;
  dbMaxAttempts?: number;
  heartbeatStaleAfter?: number;
  recoveryAfter?: number;
  admissionMaxPendingPerMachine?: number;
  admissionMaxPendingTotal?: number;
}

/** Commander names the flag and value in its own message; ours says what is wrong. */
const positiveInt = numberArg({ min: 1, integer: true });

export const BmdbConfig = {
  /** Adds the database flags to cmd. */
  registerFlags(cmd: Command): Command {
    return cmd
      .addOption(
        new Option("--database-url <url>", "postgres://…, memory:// (PGlite in memory) or a directory / file://DIR (PGlite on disk)").env(
          "BMAAS_DATABASE_URL",
        ),
      )
      .addOption(booleanOption("--skip-migrations", "do not apply schema migrations at start", "BMAAS_SKIP_MIGRATIONS"))
      .addOption(
        new Option("--db-pool-size <n>", "PostgreSQL connections").env("BMAAS_DB_POOL_SIZE").argParser(positiveInt).default(10),
      )
      .addOption(
        new Option("--db-max-attempts <n>", "attempts per transaction on serialization failure")
          .env("BMAAS_DB_MAX_ATTEMPTS")
          .argParser(positiveInt)
          .default(10),
      )
      .addOption(
        new Option("--heartbeat-stale-after <seconds>", "a heartbeat older than this is stale (machine needs recovery)")
          .env("BMAAS_HEARTBEAT_STALE_AFTER")
          .argParser(positiveInt)
          .default(600),
      )
      .addOption(
        new Option("--recovery-after <seconds>", "an agent started this long ago that never heartbeat needs recovery")
          .env("BMAAS_RECOVERY_AFTER")
          .argParser(positiveInt)
          .default(1800),
      )
      .addOption(
        new Option("--admission-max-pending-per-machine <n>", "pending keys recorded per machine; past it new keys are refused without a record")
          .env("BMAAS_ADMISSION_MAX_PENDING_PER_MACHINE")
          .argParser(positiveInt)
          .default(DEFAULT_ADMISSION_BOUNDS.maxPendingPerMachine),
      )
      .addOption(
        new Option("--admission-max-pending-total <n>", "pending keys recorded in all; past it new keys are refused without a record")
          .env("BMAAS_ADMISSION_MAX_PENDING_TOTAL")
          .argParser(positiveInt)
          .default(DEFAULT_ADMISSION_BOUNDS.maxPendingTotal),
      );
  },

  /** The URL and open options from parsed flags; throws a one-line reason. */
  fromFlags(flags: BmdbFlags): { url: string; options: OpenOptions } {
    if (!flags.databaseUrl) {
      throw new Error("--database-url is required (postgres://…, memory://, or a directory for PGlite on disk)");
    }
    return {
      url: flags.databaseUrl,
      options: {
        migrate: !flags.skipMigrations,
        ...(flags.dbPoolSize !== undefined && { poolSize: flags.dbPoolSize }),
        ...(flags.dbMaxAttempts !== undefined && { maxAttempts: flags.dbMaxAttempts }),
        thresholds: {
          heartbeatFreshMs: (flags.heartbeatStaleAfter ?? 600) * 1000,
          recoveryAfterMs: (flags.recoveryAfter ?? 1800) * 1000,
        },
        admission: {
          maxPendingPerMachine: flags.admissionMaxPendingPerMachine ?? DEFAULT_ADMISSION_BOUNDS.maxPendingPerMachine,
          maxPendingTotal: flags.admissionMaxPendingTotal ?? DEFAULT_ADMISSION_BOUNDS.maxPendingTotal,
        },
      },
    };
  },
};
