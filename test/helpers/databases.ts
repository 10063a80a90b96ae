import pg from "pg";
import { randomBytes } from "node:crypto";

/** A database the tests may use, fresh and empty. */
export interface TestDatabase {
  name: string;
  url: string;
  /** Drops what create() made (PostgreSQL) — a no-op for PGlite. */
  drop(): Promise<void>;
}

export interface BackendFactory {
  name: string;
  create(): Promise<TestDatabase>;
}

const pglite: BackendFactory = {
  name: "pglite",
  create: async () => ({ name: "pglite", url: "memory://", drop: async () => {} }),
};

/** A new PostgreSQL database per call on the server of TEST_DATABASE_URL. */
function postgres(baseUrl: string): BackendFactory {
  return {
    name: "postgres",
    async create() {
      const dbName = `bmaas_test_${randomBytes(6).toString("hex")}`;
      const admin = new pg.Client({ connectionString: baseUrl });
      await admin.connect();
      try {
        await admin.query(`create database ${dbName}`);
      } finally {
        await admin.end();
      }
      const url = new URL(baseUrl);
      url.pathname = `/${dbName}`;
      return {
        name: "postgres",
        url: url.toString(),
        async drop() {
          const c = new pg.Client({ connectionString: baseUrl });
          await c.connect();
          try {
            await c.query(`drop database if exists ${dbName} with (force)`);
          } finally {
            await c.end();
          }
        },
      };
    },
  };
}

/** PGlite in memory always; PostgreSQL too when TEST_DATABASE_URL is set. */
export function testBackends(): BackendFactory[] {
  const url = process.env.TEST_DATABASE_URL;
  return url ? [pglite, postgres(url)] : [pglite];
}
