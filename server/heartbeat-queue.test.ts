import { describe, expect, it } from "vitest";
import { DatabaseUnavailableError, type BatchOutcome, type Bmdb, type HeartbeatInput } from "../bmdb/index.js";
import { DEFAULT_QUEUE_OPTIONS, HeartbeatQueue } from "./heartbeat-queue.js";

// The queue before its database is open (server.ts starts the agent listener
// while PGlite opens): heartbeats wait, within the usual bounds, and go in
// once it is open; if it never opens they hear UNAVAILABLE. Then how batches
// form: one at a time, another only beside a stalled one.

/** A database that records every batch and authenticates everybody. */
function fakeBmdb(batches: string[][]): Bmdb {
  const db = {
    heartbeatBatch: (batch: readonly HeartbeatInput[]): Promise<BatchOutcome[]> => {
      batches.push(batch.map((h) => h.machineId));
      return Promise.resolve(batch.map(() => ({ authenticated: true, installationRequest: null })));
    },
  };
  return db as unknown as Bmdb;
}

const input = (machineId: string): HeartbeatInput => ({ machineId, publicKey: new Uint8Array(32) });

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe("HeartbeatQueue while the database opens", () => {
  it("keeps heartbeats until the database is open, then writes them together; callers gone meanwhile are dropped", async () => {
    const batches: string[][] = [];
    const opening = deferred<Bmdb>();
    const queue = new HeartbeatQueue(opening.promise, DEFAULT_QUEUE_OPTIONS, () => 0);
    let aliveB = true;
    const a = queue.submit(input("a"), () => true);
    const b = queue.submit(input("b"), () => aliveB);
    const c = queue.submit(input("c"), () => true);
    await new Promise((r) => setTimeout(r, 20));
    expect(batches).toEqual([]);
    expect(queue.inflight).toBe(3);
    aliveB = false;
    opening.resolve(fakeBmdb(batches));
    expect(await a).toEqual({ authenticated: true, installationRequest: null });
    expect(await b).toBeUndefined();
    expect(await c).toEqual({ authenticated: true, installationRequest: null });
    expect(batches).toEqual([["a", "c"]]);
    expect(queue.counters.droppedGone).toBe(1);
    expect(queue.inflight).toBe(0);
  });

  it("counts waiting heartbeats against the in-flight bound", () => {
    const queue = new HeartbeatQueue(new Promise<Bmdb>(() => {}), { ...DEFAULT_QUEUE_OPTIONS, maxInflight: 2 }, () => 0);
    expect(queue.admit()).toBeUndefined();
    void queue.submit(input("a"), () => true);
    expect(queue.admit()).toBeUndefined();
    void queue.submit(input("b"), () => true);
    expect(queue.admit()?.code).toBe(14);
  });

  it("fails waiting heartbeats as unavailable when the database cannot be opened", async () => {
    const opening = deferred<Bmdb>();
    const queue = new HeartbeatQueue(opening.promise, DEFAULT_QUEUE_OPTIONS, () => 0);
    const waiting = queue.submit(input("a"), () => true);
    opening.reject(new Error("disk on fire"));
    await expect(waiting).rejects.toBeInstanceOf(DatabaseUnavailableError);
    expect(queue.inflight).toBe(0);
  });
});

describe("HeartbeatQueue batches", () => {
  /** A database whose batches finish only when the test says so. */
  function heldBmdb() {
    const batches: { ids: string[]; done: () => void }[] = [];
    const db = {
      heartbeatBatch: (batch: readonly HeartbeatInput[]): Promise<BatchOutcome[]> => {
        const d = deferred<BatchOutcome[]>();
        batches.push({ ids: batch.map((h) => h.machineId), done: () => d.resolve(batch.map(() => ({ authenticated: true, installationRequest: null }))) });
        return d.promise;
      },
    };
    return { bmdb: db as unknown as Bmdb, batches };
  }
  const ids = (batches: { ids: string[] }[]) => batches.map((b) => b.ids);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  /**
   * A new queue whose recent batch time is ~50 ms (one 250 ms batch, then
   * forgotten): the stall threshold is then ~100 ms, not the 5 ms floor, so
   * that the steps of a test on a busy machine (CI runs files side by side)
   * are not themselves taken for a stall.
   */
  async function warmQueue(concurrency: number) {
    const { bmdb, batches } = heldBmdb();
    const queue = new HeartbeatQueue(bmdb, { ...DEFAULT_QUEUE_OPTIONS, concurrency }, () => 0);
    await sleep(0);
    const warm = queue.submit(input("warm"), () => true);
    await sleep(250);
    batches[0]!.done();
    await warm;
    batches.length = 0;
    expect(queue.stallMs()).toBeGreaterThan(50);
    return { queue, batches };
  }

  it("runs one batch at a time while batches are quick: what arrives meanwhile goes in together", async () => {
    const { queue, batches } = await warmQueue(DEFAULT_QUEUE_OPTIONS.concurrency);
    const a = queue.submit(input("a"), () => true);
    await sleep(0);
    const rest = ["b", "c", "d"].map((m) => queue.submit(input(m), () => true));
    await sleep(0);
    expect(ids(batches)).toEqual([["a"]]);
    batches[0]!.done();
    await a;
    await sleep(0);
    expect(ids(batches)).toEqual([["a"], ["b", "c", "d"]]);
    batches[1]!.done();
    await Promise.all(rest);
  });

  it("starts another batch beside one that has stalled, up to --heartbeat-batches", async () => {
    const { queue, batches } = await warmQueue(2);
    const all = [queue.submit(input("a"), () => true)];
    await sleep(0);
    all.push(queue.submit(input("b"), () => true));
    await sleep(0);
    expect(ids(batches)).toEqual([["a"]]);
    // "a" is now slower than the stall threshold: "b" goes beside it.
    await sleep(queue.stallMs() + 20);
    expect(ids(batches)).toEqual([["a"], ["b"]]);
    // Two are running, the most allowed: "c" waits for either to finish, however long.
    all.push(queue.submit(input("c"), () => true));
    await sleep(queue.stallMs() + 20);
    expect(ids(batches)).toEqual([["a"], ["b"]]);
    batches[1]!.done();
    await all[1];
    await sleep(0);
    expect(ids(batches)).toEqual([["a"], ["b"], ["c"]]);
    batches[0]!.done();
    batches[2]!.done();
    await Promise.all(all);
  });
});
