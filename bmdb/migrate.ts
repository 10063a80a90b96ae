import { Migrator, type Kysely } from "kysely";
import { migrationProvider } from "../migrations/index.js";
import type { Database } from "./database.js";
import { DatabaseUnavailableError } from "./errors.js";

/**
 * Applies pending migrations. Safe to run again (applied ones are skipped)
 * and from several servers at once: kysely's Migrator serialises them with an
 * advisory lock and tolerates losing the race to create its own tables.
 * Returns the names of the migrations this call applied.
 */
export async function migrate(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw new DatabaseUnavailableError("migrate", error);
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}
