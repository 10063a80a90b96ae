import { chmodSync, existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Kysely, PostgresDialect, sql, type DatabaseConnection, type Dialect, type Driver, type TransactionSettings } from "kysely";
import pg from "pg";
import { Bmdb, type BmdbOptions } from "./bmdb.js";
import type { Database } from "./database.js";
import { DatabaseUnavailableError } from "./errors.js";
import { migrate } from "./migrate.js";
import { EventHub, type NotificationSource } from "./events.js";
import { registerPGliteWorker } from "./private/batch.js";
import { Breaker, type DatabaseState } from "./private/breaker.js";
import { postgresNotifications, pgliteNotifications } from "./private/notification-sources.js";
import { PGliteWorkerClient, PGliteWorkerDialect } from "./private/pglite-worker-dialect.js";
import { registerBreaker } from "./private/transact.js";

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
  /**
   * How long a PostgreSQL call may wait for a pooled connection (dialling
   * included) before it fails as unavailable; default 5000 ms.
   */
  connectTimeoutMs?: number;
  /**
   * Called once per change of the database's reachability, as the breaker
   * sees it: "down" with the failure that opened it, "up" when a call or the
   * breaker's own probe got through again. bmdb has no logger; the server
   * logs these.
   */
  onDatabaseState?: (state: DatabaseState, reason?: string) => void;
}

interface Opened {
  dialect: Dialect;
  notifications: NotificationSource;
  /** The PGlite worker, if any. */
  worker?: PGliteWorkerClient;
}

function dialectFor(backend: Backend, options: OpenOptions): Opened {
  switch (backend.kind) {
    case "postgres": {
      const pool = new pg.Pool({
        connectionString: backend.url,
        max: options.poolSize ?? 10,
        connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
        keepAlive: true,
        types: {
          getTypeParser: ((oid: number, format?: "text" | "binary") =>
            oid === INT8_OID ? parseInt8 : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
        },
      });
      // A client losing its server must never crash the process. pg-pool
      // listens for errors only on idle clients (and re-emits them as the
      // pool's "error"); a client checked out by a transaction has no
      // listener, so its 'error' event (57P01 on a PostgreSQL shutdown,
      // ECONNRESET...) would be unhandled. Its query fails instead, the call
      // is answered UNAVAILABLE, and the pool drops the broken client.
      pool.on("connect", (client) => client.on("error", () => {}));
      pool.on("error", () => {});
      return { dialect: new PostgresDialect({ pool }), notifications: postgresNotifications(backend.url) };
    }
    case "pglite-memory":
    case "pglite-dir": {
      const worker = new PGliteWorkerClient(backend.kind === "pglite-dir" ? backend.dir : undefined);
      return { dialect: new PGliteWorkerDialect(worker), notifications: pgliteNotifications(worker), worker };
    }
  }
}

/**
 * Makes PGlite's data directory (owner only, as PostgreSQL requires of its
 * data directory: it holds every table and the WAL) and, the first time,
 * the database cluster in it; true when it did the latter. The cluster is
 * made by a worker of its own that then ends: PostgreSQL's initdb inside
 * PGlite grows the WebAssembly memory to ~650 MiB, which never shrinks while
 * its instance lives, so a server kept that after its first start (measured:
 * RSS 653 MiB once started on a new directory, 220 MiB on an existing one).
 */
export async function preparePGliteDir(dir: string): Promise<boolean> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  if (existsSync(join(dir, "PG_VERSION"))) return false;
  const init = new PGliteWorkerClient(dir);
  try {
    await init.ready();
  } finally {
    await init.close();
  }
  return true;
}

/** dialect, whose driver also runs onDestroy first when kysely destroys it. */
function onDestroy(dialect: Dialect, hook: () => void): Dialect {
  return {
    createAdapter: () => dialect.createAdapter(),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createDriver: (): Driver => {
      const d = dialect.createDriver();
      return {
        init: () => d.init(),
        acquireConnection: () => d.acquireConnection(),
        beginTransaction: (c: DatabaseConnection, s: TransactionSettings) => d.beginTransaction(c, s),
        commitTransaction: (c: DatabaseConnection) => d.commitTransaction(c),
        rollbackTransaction: (c: DatabaseConnection) => d.rollbackTransaction(c),
        releaseConnection: (c: DatabaseConnection) => d.releaseConnection(c),
        destroy: () => {
          hook();
          return d.destroy();
        },
      };
    },
  };
}

/**
 * Opens the machine database at url, checks it answers, and applies
 * migrations unless told not to. Fails with DatabaseUnavailableError when the
 * database cannot be reached.
 *
 * Every call on the returned Bmdb goes through one circuit breaker (see
 * private/breaker.ts): options.onDatabaseState hears when it opens and closes.
 */
export async function openBmdb(url: string, options: OpenOptions = {}): Promise<Bmdb> {
  const backend = parseDatabaseUrl(url);
  if (backend.kind === "pglite-dir") {
    await preparePGliteDir(backend.dir).catch((error: unknown) => {
      throw new DatabaseUnavailableError("open database", error);
    });
  }
  const { dialect, notifications, worker } = dialectFor(backend, options);
  let breaker: Breaker | undefined;
  const db = new Kysely<Database>({ dialect: onDestroy(dialect, () => breaker?.stop()) });
  breaker = new Breaker({
    ...(options.onDatabaseState && { onStateChange: options.onDatabaseState }),
    probe: () => sql`select 1`.execute(db),
  });
  registerBreaker(db, breaker);
  if (worker) registerPGliteWorker(db, worker);
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
    // kysely destroys only a driver whose init succeeded.
    breaker.stop();
    await worker?.close().catch(() => {});
    throw error instanceof DatabaseUnavailableError ? error : new DatabaseUnavailableError("open database", error);
  }
  return new Bmdb(db, options, hub);
}
