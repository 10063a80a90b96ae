// The disk's own sync latency, measured beside the heartbeat benchmark's
// phases. Every heartbeat is acknowledged only after its batch's commit is on
// the disk (PostgreSQL's WAL flush, PGlite's fsync), so a sync that stalls
// stalls every heartbeat of those moments, whatever the server does. On one
// machine (2026-11-27) fdatasync of 4 KiB took 0.2-0.5 ms at p99 but 150-400
// ms now and then, with nothing else running; a 60 s phase at 1,000/s has
// its p99 decided by the 600 slowest calls, so two such stalls decide it. The
// probe syncs a small file of its own every periodMs and keeps every sync's
// start and duration, so the report can say which slow seconds the disk
// explains. Its cost: one 4 KiB write and sync per period (50/s by default),
// beside the ~1,000 commits/s being measured.

import { open, type FileHandle } from "node:fs/promises";

/** One sync: when it started (unix ms) and how long it took (ms). */
export interface DiskSync {
  t: number;
  ms: number;
}

const BLOCK = 4096;
const BLOCKS = 256;

export class DiskProbe {
  readonly syncs: DiskSync[] = [];
  #stopped = false;
  readonly #loop: Promise<void>;

  private constructor(
    readonly file: string,
    fh: FileHandle,
    periodMs: number,
  ) {
    this.#loop = this.#run(fh, periodMs);
  }

  /** Starts syncing `file` (created, overwritten) every periodMs until stop(). */
  static async start(file: string, periodMs = 20): Promise<DiskProbe> {
    return new DiskProbe(file, await open(file, "w"), periodMs);
  }

  async #run(fh: FileHandle, periodMs: number): Promise<void> {
    const block = Buffer.alloc(BLOCK, 0x5a);
    try {
      for (let i = 0; !this.#stopped; i++) {
        // A block rewritten in place: the file stays 1 MiB, and each sync
        // writes data, as a commit does.
        await fh.write(block, 0, BLOCK, (i % BLOCKS) * BLOCK);
        const t = Date.now();
        const started = performance.now();
        await fh.datasync();
        this.syncs.push({ t, ms: performance.now() - started });
        await new Promise((r) => setTimeout(r, periodMs));
      }
    } finally {
      await fh.close();
    }
  }

  /** Stops after the sync in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  /** The slowest sync that started in [from, to) (unix ms); undefined when none did. */
  slowestIn(from: number, to: number): number | undefined {
    let slowest: number | undefined;
    for (const s of this.syncs) if (s.t >= from && s.t < to && (slowest === undefined || s.ms > slowest)) slowest = s.ms;
    return slowest;
  }

  /** The syncs that started in [from, to) and took longer than overMs. */
  slowerThan(overMs: number, from = 0, to = Infinity): DiskSync[] {
    return this.syncs.filter((s) => s.ms > overMs && s.t >= from && s.t < to);
  }
}

/** p50, p99 and max of the syncs' durations (ms); zeros when there were none. */
export function syncPercentiles(syncs: readonly DiskSync[]): { count: number; p50: number; p99: number; max: number } {
  const d = syncs.map((s) => s.ms).sort((a, b) => a - b);
  const at = (q: number) => d[Math.min(d.length - 1, Math.floor(q * d.length))] ?? 0;
  return { count: d.length, p50: at(0.5), p99: at(0.99), max: d[d.length - 1] ?? 0 };
}
