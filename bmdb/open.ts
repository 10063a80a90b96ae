import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { Kysely, PostgresDialect, type Dialect } from "kysely";
import pg from "pg";
import { Bmdb, type BmdbOptions } from "./bmdb.js";
import type { Database } from "./database.js";
import { DatabaseUnavailableError } from "./errors.js";
import { migrate } from "./migrate.js";
import { EventHub, type NotificationSource } from "./events.js";
import { postgresNotifications, pgliteNotifications } from "./private/notification-sources.js";
import { PGliteDialect } from "./private/pglite-dialect.js";

/** Where the database lives, parsed from a URL. */
export type Backend =
  | { kind: "postgres"; url: string }
  | { kind: "pglite-memory" }
  | { kind: "pglite-dir"; dir: string };

/**
 * postgres:// or postgresql:// → PostgreSQL over a pg Pool; memory:// →
 * PGlite in memory; file://DIR or a plain path → PGlite on disk in DIR.
 */
export function parseDatabaseUrl(url: string): Backend {
  if (/^postgres(ql)?:\/\//.test(url)) return { kind: "postgres", url };
  if (url === "memory://" || url === "memory:") return { kind: "pglite-memory" };
  if (url.startsWith("file://")) return { kind: "pglite-dir", dir: fileURLToPath(url) };
  if (url === "" || /^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw new Error(`unsupported database URL "${url}": use postgres://…, memory:// or file://DIR`);
  }
  return { kind: "pglite-dir", dir: resolve(url) };
}

const INT8_OID = 20;
// int8 columns (generations) are read as bigint on every backend, so callers
// never see the precision loss of number or the strings pg returns by default.
const parseInt8 = (v: string): bigint => BigInt(v);

export interface OpenOptions extends BmdbOptions {
  /** Apply pending migrations before returning (default true). */
  migrate?: boolean;
  /** pg Pool size (PostgreSQL only). */
  poolSize?: number;
}

function dialectFor(backend: Backend, options: OpenOptions): { dialect: Dialect; notifications: NotificationSource } {
  switch (backend.kind) {
    case "postgres": {
      const pool = new pg.Pool({
        connectionString: backend.url,
        max: options.poolSize ?? 10,
        types: {
          getTypeParser: ((oid: number, format?: "text" | "binary") =>
            oid === INT8_OID ? parseInt8 : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
        },
      });
      // An idle client losing its server must not crash the process; the next
      // query fails and is answered UNAVAILABLE instead.
      pool.on("error", () => {});
      return { dialect: new PostgresDialect({ pool }), notifications: postgresNotifications(backend.url) };
    }
    case "pglite-memory":
    case "pglite-dir": {
      if (backend.kind === "pglite-dir") mkdirSync(backend.dir, { recursive: true });
      const options = { parsers: { [INT8_OID]: parseInt8 } };
      const pglite = backend.kind === "pglite-dir" ? new PGlite(backend.dir, options) : new PGlite(options);
      return { dialect: new PGliteDialect(pglite), notifications: pgliteNotifications(pglite) };
    }
  }
}

/**
 * Opens the machine database at url, checks it answers, and applies
 * migrations unless told not to. Fails with DatabaseUnavailableError when the
 * database cannot be reached.
 */
export async function openBmdb(url: string, options: OpenOptions = {}): Promise<Bmdb> {
  const backend = parseDatabaseUrl(url);
  const { dialect, notifications } = dialectFor(backend, options);
  const db = new Kysely<Database>({ dialect });
  const hub = new EventHub(notifications);
  try {
    if (options.migrate ?? true) {
      await migrate(db);
    } else {
      await db.selectNoFrom((eb) => eb.lit(1).as("one")).execute();
    }
    // Listen before serving: on PGlite, LISTEN must not run inside another
    // caller's transaction on the one shared connection, so it runs now.
    await hub.start();
  } catch (error) {
    await hub.close().catch(() => {});
    await db.destroy().catch(() => {});
    throw error instanceof DatabaseUnavailableError ? error : new DatabaseUnavailableError("open database", error);
  }
  return new Bmdb(db, options, hub);
}
