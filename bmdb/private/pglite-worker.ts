// The PGlite worker thread: owns one PGlite instance and runs the statements
// the main thread sends, one message at a time, in arrival order. Its WASM
// work therefore never blocks the thread that does TLS and gRPC.
//
// Started by pglite-worker-dialect.ts; not meant to be run by hand.

import { parentPort, workerData } from "node:worker_threads";
import { PGlite, type Results } from "@electric-sql/pglite";
import { durablePGliteOptions } from "./pglite-durable-fs.js";
import {
  serializeError,
  type BatchTransaction,
  type WorkerData,
  type WorkerError,
  type WorkerReply,
  type WorkerRequest,
  type WorkerResult,
  type WorkerStatement,
} from "./pglite-worker-protocol.js";

const INT8_OID = 20;

const port = parentPort;
if (!port) throw new Error("pglite-worker must run in a worker thread");

const post = (reply: WorkerReply): void => port.postMessage(reply);
const { dataDir } = workerData as WorkerData;

// int8 columns (generations) are read as bigint, which structured clone
// carries to the main thread unchanged.
// shared_buffers: PostgreSQL's 128 MB default ends up touched inside the
// WebAssembly heap, which never shrinks. 32 MB cut RSS by ~105 MiB in a trial
// (100,000 rows written and updated: 779 → 673 MiB); pages beyond it are read
// back from the OS page cache, so a large fleet costs reads, not memory.
// On disk, every commit is synced to the disk (./pglite-durable-fs.ts says
// why PGlite needs help for that); in memory there is nothing to sync.
const parsers = { [INT8_OID]: (v: string): bigint => BigInt(v) };
const tuning = ["-c", "shared_buffers=32MB"];
const pg =
  dataDir === undefined
    ? new PGlite({ parsers, startParams: [...PGlite.defaultStartParams, ...tuning] })
    : new PGlite({ parsers, ...durablePGliteOptions(dataDir, tuning) });
const unlisteners = new Map<string, () => Promise<void>>();

const toResult = (r: Results): WorkerResult => ({ rows: r.rows, affectedRows: r.affectedRows });

const run = async (s: WorkerStatement): Promise<WorkerResult> => toResult(await pg.query(s.sql, [...s.params]));

function beginSql(t: BatchTransaction): string {
  return ["begin", t.isolationLevel && `isolation level ${t.isolationLevel}`, t.accessMode].filter(Boolean).join(" ");
}

type BatchOutcome = { kind: "done"; results: WorkerResult[] } | { kind: "failed"; error: WorkerError };

async function batch(statements: WorkerStatement[], transaction: BatchTransaction | null): Promise<BatchOutcome> {
  const results: WorkerResult[] = [];
  if (transaction) await pg.query(beginSql(transaction));
  for (const [i, s] of statements.entries()) {
    try {
      results.push(await run(s));
    } catch (error) {
      if (transaction) await pg.query("rollback").catch(() => {});
      return { kind: "failed", error: serializeError(error, i) };
    }
  }
  if (transaction) {
    try {
      await pg.query("commit");
    } catch (error) {
      await pg.query("rollback").catch(() => {});
      return { kind: "failed", error: serializeError(error, statements.length) };
    }
  }
  return { kind: "done", results };
}

async function handle(m: WorkerRequest): Promise<WorkerReply> {
  switch (m.kind) {
    case "query":
      return { kind: "done", id: m.id, results: [await run(m.statement)] };
    case "batch":
      return { ...(await batch(m.statements, m.transaction)), id: m.id };
    case "listen":
      if (!unlisteners.has(m.channel)) {
        const channel = m.channel;
        unlisteners.set(channel, await pg.listen(channel, (payload) => post({ kind: "notification", channel, payload })));
      }
      return { kind: "done", id: m.id, results: [] };
    case "unlisten":
      await unlisteners.get(m.channel)?.();
      unlisteners.delete(m.channel);
      return { kind: "done", id: m.id, results: [] };
    case "close":
      if (!pg.closed) await pg.close();
      return { kind: "done", id: m.id, results: [] };
  }
}

// One message at a time: the main thread's lock already orders transactions,
// this keeps listen/unlisten/close behind the statements sent before them.
let chain: Promise<void> = pg.waitReady.then(
  () => post({ kind: "ready" }),
  (error: unknown) => post({ kind: "init-failed", error: serializeError(error) }),
);

port.on("message", (m: WorkerRequest) => {
  chain = chain.then(async () => {
    let reply: WorkerReply;
    try {
      reply = await handle(m);
    } catch (error) {
      reply = { kind: "failed", id: m.id, error: serializeError(error) };
    }
    post(reply);
  });
});
