import { Kysely, PostgresDialect, sql } from "kysely";
import { createServer, type AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testBackends, type TestDatabase } from "../../test/helpers/databases.js";
import { startTcpProxy, type TcpProxy } from "../../test/helpers/tcp-proxy.js";
import { databaseForTests, type Bmdb } from "../bmdb.js";
import type { Database } from "../database.js";
import { DatabaseUnavailableError, MachineNotFoundError } from "../errors.js";
import type { EventDelivery } from "../events.js";
import { openBmdb } from "../open.js";
import { Breaker, type DatabaseState } from "./breaker.js";
import { classifyError, ConnectionLostError, DriverClosedError } from "./classify.js";
import { guarded, newTransactContext, newTransactionStats, transact, type TransactContext } from "./transact.js";

const withCode = (code: string, message = "x") => Object.assign(new Error(message), { code });

describe("classifyError", () => {
  it.each([
    ["57P01 admin shutdown", withCode("57P01", "terminating connection due to administrator command"), "connection"],
    ["57P02 crash shutdown", withCode("57P02"), "connection"],
    ["57P03 starting up", withCode("57P03", "the database system is starting up"), "connection"],
    ["08006 connection failure", withCode("08006"), "connection"],
    ["08001 cannot connect", withCode("08001"), "connection"],
    ["53300 too many connections", withCode("53300"), "connection"],
    ["ECONNREFUSED", withCode("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1"), "connection"],
    ["ECONNRESET", withCode("ECONNRESET", "read ECONNRESET"), "connection"],
    ["EPIPE", withCode("EPIPE"), "connection"],
    ["ETIMEDOUT", withCode("ETIMEDOUT"), "connection"],
    ["AggregateError of refusals", new AggregateError([withCode("ECONNREFUSED"), withCode("ECONNREFUSED")], ""), "connection"],
    ["pg: Connection terminated unexpectedly", new Error("Connection terminated unexpectedly"), "connection"],
    ["pg: connect timeout", new Error("Connection terminated due to connection timeout"), "connection"],
    ["pg: not queryable", new Error("Client has encountered a connection error and is not queryable"), "connection"],
    ["the PGlite worker died", new ConnectionLostError("the PGlite worker stopped"), "connection"],
    ["pg-pool queue timeout", new Error("timeout exceeded when trying to connect"), "unavailable"],
    ["closed while in flight", new DriverClosedError("closed"), "unavailable"],
    ["40001", withCode("40001"), "retry"],
    ["40P01", withCode("40P01"), "retry"],
    ["a TypeError", new TypeError("x is not a function"), "bug"],
    ["23505 unexpected unique violation", withCode("23505", "duplicate key"), "bug"],
    ["22021 bad encoding", withCode("22021", "invalid byte sequence"), "bug"],
    ["42P01 missing table", withCode("42P01"), "bug"],
    ["a string", "boom", "bug"],
  ])("%s → %s", (_name, error, expected) => {
    expect(classifyError(error)).toBe(expected);
  });
});

/** A context whose database is never used: fn stands in for it. */
function fakeContext(maxAttempts = 3): TransactContext & { states: DatabaseState[] } {
  const states: DatabaseState[] = [];
  const breaker = new Breaker({ onStateChange: (s) => void states.push(s) });
  return { db: {} as Kysely<Database>, stats: newTransactionStats(), breaker, maxAttempts, states };
}

describe("guarded", () => {
  it("passes a bug on as it is, counted in errors, and leaves the breaker closed", async () => {
    const ctx = fakeContext();
    const bug = new TypeError("cannot read properties of undefined");
    await expect(guarded(ctx, "op", () => Promise.reject(bug))).rejects.toBe(bug);
    const constraint = withCode("23505", "duplicate key value violates unique constraint");
    await expect(guarded(ctx, "op", () => Promise.reject(constraint))).rejects.toBe(constraint);
    expect(ctx.stats).toMatchObject({ attempts: 2, errors: 2, failed: 0, executed: 0 });
    expect(ctx.breaker.up).toBe(true);
  });

  it("repeats serialization failures, then gives up as unavailable", async () => {
    const ctx = fakeContext(3);
    let calls = 0;
    await expect(guarded(ctx, "op", async () => (++calls < 3 ? Promise.reject(withCode("40001")) : "ok"))).resolves.toBe("ok");
    expect(ctx.stats).toMatchObject({ attempts: 3, retried: 2, executed: 1 });
    calls = 0;
    await expect(guarded(ctx, "op", async () => (calls++, Promise.reject(withCode("40001"))))).rejects.toBeInstanceOf(DatabaseUnavailableError);
    expect(calls).toBe(3);
    expect(ctx.stats.failed).toBe(1);
    // The database answered: it is up.
    expect(ctx.breaker.up).toBe(true);
  });

  it("counts domain answers as rejected", async () => {
    const ctx = fakeContext();
    await expect(guarded(ctx, "op", () => Promise.reject(new MachineNotFoundError("m")))).rejects.toBeInstanceOf(MachineNotFoundError);
    expect(ctx.stats).toMatchObject({ rejected: 1, failed: 0, errors: 0 });
  });

  it("turns a connection failure into DatabaseUnavailableError and then refuses without calling fn", async () => {
    const ctx = fakeContext();
    let calls = 0;
    const fn = async () => {
      calls++;
      throw withCode("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:5432");
    };
    const first = await guarded(ctx, "heartbeat", fn).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DatabaseUnavailableError);
    expect((first as Error).message).toMatch(/^heartbeat: connect ECONNREFUSED/);
    for (let i = 0; i < 20; i++) await expect(guarded(ctx, "heartbeat", fn)).rejects.toBeInstanceOf(DatabaseUnavailableError);
    expect(calls).toBe(1);
    expect(ctx.stats).toMatchObject({ attempts: 1, failed: 21 });
    expect(ctx.states).toEqual(["down"]);
    await new Promise((r) => setTimeout(r, 60));
    await expect(guarded(ctx, "heartbeat", async () => "ok")).resolves.toBe("ok");
    expect(ctx.states).toEqual(["down", "up"]);
  });
});

describe("a database that is down", () => {
  it("a wrong port: UNAVAILABLE, and the driver is called once per back-off, not once per call", async () => {
    const pool = new pg.Pool({ connectionString: "postgres://nobody@127.0.0.1:1/none", connectionTimeoutMillis: 2_000 });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    // A longer back-off than the default 50 ms, so that a busy test machine
    // cannot stretch the loop below past it.
    const ctx = newTransactContext(db, { maxAttempts: 1, breaker: new Breaker({ initialBackoffMs: 300 }) });
    let calls = 0;
    const probe = () => guarded(ctx, "probe", () => (calls++, sql`select 1`.execute(db)));
    try {
      const first = await probe().catch((err: unknown) => err);
      expect(first).toBeInstanceOf(DatabaseUnavailableError);
      expect(classifyError((first as Error).cause)).toBe("connection");
      for (let i = 0; i < 50; i++) await expect(probe()).rejects.toBeInstanceOf(DatabaseUnavailableError);
      expect(calls).toBe(1);
      await new Promise((r) => setTimeout(r, 320));
      await probe().catch(() => {});
      expect(calls).toBe(2);
    } finally {
      await db.destroy();
    }
  });

  it("a server that resets every connection is dialled once per back-off", async () => {
    let dials = 0;
    const server = createServer((s) => {
      dials++;
      s.resetAndDestroy();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const pool = new pg.Pool({ connectionString: `postgres://nobody@127.0.0.1:${port}/none`, connectionTimeoutMillis: 2_000 });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    const ctx = newTransactContext(db, { maxAttempts: 1, breaker: new Breaker({ initialBackoffMs: 300 }) });
    try {
      const started = Date.now();
      let calls = 0;
      while (Date.now() - started < 100) {
        calls++;
        await expect(guarded(ctx, "probe", () => sql`select 1`.execute(db))).rejects.toBeInstanceOf(DatabaseUnavailableError);
      }
      expect(calls).toBeGreaterThan(10);
      expect(dials).toBe(1);
      expect(ctx.breaker.up).toBe(false);
      await new Promise((r) => setTimeout(r, 320));
      await guarded(ctx, "probe", () => sql`select 1`.execute(db)).catch(() => {});
      expect(dials).toBe(2);
    } finally {
      await db.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

for (const backend of testBackends()) {
  describe(`errors the database answers with, on ${backend.name}`, () => {
    let tdb: TestDatabase;
    let bmdb: Bmdb;
    beforeAll(async () => {
      tdb = await backend.create();
      bmdb = await openBmdb(tdb.url);
    });
    afterAll(async () => {
      await bmdb?.close();
      await tdb?.drop();
    });

    it("a 22021 (bad encoding) and a TypeError pass through as they are: bugs, not outages", async () => {
      const badUtf8 = new Uint8Array([0xff, 0xfe]);
      const e = await transact(databaseForTests(bmdb), bmdb.stats, "decode", { maxAttempts: 3 }, (trx) =>
        sql`select convert_from(${badUtf8}, 'UTF8') as s`.execute(trx),
      ).catch((err: unknown) => err);
      expect(e).not.toBeInstanceOf(DatabaseUnavailableError);
      expect((e as { code?: string }).code).toBe("22021");
      const typeError = await transact(databaseForTests(bmdb), bmdb.stats, "bug", { maxAttempts: 3 }, async (trx) => {
        await sql`select 1`.execute(trx);
        const missing = undefined as unknown as { call(): void };
        missing.call();
      }).catch((err: unknown) => err);
      expect(typeError).toBeInstanceOf(TypeError);
      expect(bmdb.stats.errors).toBe(2);
      expect(bmdb.stats.failed).toBe(0);
      // Neither says anything about the database being down; it still works.
      await expect(bmdb.createMachine()).resolves.toMatch(/-/);
    });
  });
}

const pgUrl = process.env.TEST_DATABASE_URL;

describe.runIf(pgUrl)("lost PostgreSQL connections", () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    const factory = testBackends().find((b) => b.name === "postgres")!;
    tdb = await factory.create();
  });
  afterAll(async () => {
    await tdb?.drop();
  });

  async function terminateBackends(where: string): Promise<number> {
    const admin = new pg.Client({ connectionString: pgUrl });
    await admin.connect();
    try {
      const r = await admin.query<{ n: number }>(
        `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid() ${where}`,
        [new URL(tdb.url).pathname.slice(1)],
      );
      return r.rows[0]?.n ?? 0;
    } finally {
      await admin.end();
    }
  }

  it("a connection terminated inside a transaction is UNAVAILABLE, never an unhandled 'error' event; the breaker reports down and up once each", async () => {
    const states: Array<[DatabaseState, string | undefined]> = [];
    const bmdb = await openBmdb(tdb.url, { onDatabaseState: (s, r) => void states.push([s, r]) });
    const gaps: string[] = [];
    const unsubscribe = await bmdb.subscribe((d: EventDelivery) => void (d.kind === "gap" && gaps.push(d.reason)));
    try {
      const e = await transact(databaseForTests(bmdb), bmdb.stats, "victim", { maxAttempts: 3 }, async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        // Kill our own backend while we hold it, idle in transaction: the
        // client gets 57P01 asynchronously, with no query running.
        expect(await terminateBackends(`and pid = ${Number(rows[0]!.pid)}`)).toBe(1);
        await new Promise((r) => setTimeout(r, 100));
        await sql`select 1`.execute(trx);
      }).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(DatabaseUnavailableError);
      expect(states.map(([s]) => s)).toEqual(["down"]);
      expect(bmdb.stats.failed).toBe(1);
      // The breaker's own probe brings it back without any call.
      const t0 = Date.now();
      while (states.length < 2 && Date.now() - t0 < 2_000) await new Promise((r) => setTimeout(r, 10));
      expect(states.map(([s]) => s)).toEqual(["down", "up"]);
      await expect(bmdb.createMachine()).resolves.toMatch(/-/);

      // Now every connection at once, the LISTEN one included.
      expect(await terminateBackends("")).toBeGreaterThanOrEqual(2);
      const t1 = Date.now();
      while (gaps.length === 0 && Date.now() - t1 < 2_000) await new Promise((r) => setTimeout(r, 10));
      expect(gaps).toHaveLength(1);
      // Calls recover (idle pooled clients were dropped by the pool), and
      // the LISTEN connection comes back: a new event arrives.
      const events: string[] = [];
      const off = await bmdb.subscribe((d) => void (d.kind === "event" && events.push(d.event.machineId)));
      let id: string | undefined;
      const t2 = Date.now();
      while (Date.now() - t2 < 3_000) {
        id ??= await bmdb.createMachine().catch(() => undefined);
        if (id && events.includes(id)) break;
        if (id) {
          // Created before LISTEN was back: make another.
          id = undefined;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(id && events.includes(id)).toBe(true);
      off();
    } finally {
      unsubscribe();
      await bmdb.close();
    }
  });

  it("through a cut network path: UNAVAILABLE at once while down, first OK under a second after it is back", async () => {
    const url = new URL(pgUrl!);
    const proxy: TcpProxy = await startTcpProxy(url.hostname, Number(url.port || 5432));
    const proxied = new URL(tdb.url);
    proxied.host = `127.0.0.1:${proxy.port}`;
    const states: DatabaseState[] = [];
    const bmdb = await openBmdb(proxied.toString(), { migrate: false, onDatabaseState: (s) => void states.push(s) });
    try {
      let stop = false;
      const outcomes: Array<{ at: number; ok: boolean; ms: number }> = [];
      const workers = Array.from({ length: 8 }, async () => {
        while (!stop) {
          const t = Date.now();
          const ok = await bmdb.listMachines({}, 1).then(
            () => true,
            (e: unknown) => {
              expect(e).toBeInstanceOf(DatabaseUnavailableError);
              return false;
            },
          );
          outcomes.push({ at: Date.now(), ok, ms: Date.now() - t });
          if (!ok) await new Promise((r) => setTimeout(r, 2));
        }
      });
      await new Promise((r) => setTimeout(r, 200));
      const acceptedBefore = proxy.accepted;
      await proxy.down();
      const downAt = Date.now();
      await new Promise((r) => setTimeout(r, 1_000));
      await proxy.up();
      const upAt = Date.now();
      await new Promise((r) => setTimeout(r, 1_000));
      stop = true;
      await Promise.all(workers);

      const during = outcomes.filter((o) => o.at > downAt + 50 && o.at < upAt);
      expect(during.length).toBeGreaterThan(50);
      expect(during.every((o) => !o.ok)).toBe(true);
      // Refused at once, not after dialling.
      expect(during.filter((o) => o.ms > 20).length).toBeLessThan(during.length / 10);
      const firstOk = outcomes.find((o) => o.at >= upAt && o.ok);
      expect(firstOk).toBeDefined();
      expect(firstOk!.at - upAt).toBeLessThan(1_000);
      expect(states).toEqual(["down", "up"]);
      // While down, nobody reached the proxy (it was closed), and after it
      // came back only a handful of connections were opened.
      expect(proxy.accepted - acceptedBefore).toBeLessThanOrEqual(12);
    } finally {
      await bmdb.close();
      await proxy.close();
    }
  });
});
