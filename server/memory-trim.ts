import type { Logger } from "pino";
import { loadNativeAddon } from "../lib/native-addon.js";
import { startBackgroundJob, type BackgroundJob } from "./background-job.js";

// Gives memory that glibc keeps after free() back to the OS, now and then
// (native/memory-trim.c). Without it the server's RSS keeps the high-water
// mark of every burst: PGlite's compilation and query work in its worker
// thread, a reconnect storm's handshakes. A trim walks the free lists of
// every arena on the main thread: measured 1.5 ms with little to give back
// and 24 ms for 190 MiB (memory-trim.test.ts), so every 10 s by default.

interface TrimAddon {
  trim(): boolean;
  supported: boolean;
}

let addon: TrimAddon | undefined | null;

function trimAddon(logger: Logger): TrimAddon | undefined {
  if (addon === undefined) {
    const loaded = loadNativeAddon<TrimAddon>("memory_trim");
    addon = loaded.addon?.supported ? loaded.addon : null;
    if (!addon) logger.info({ reason: loaded.error ?? "not glibc" }, "freed memory is not trimmed");
  }
  return addon ?? undefined;
}

export interface TrimResult {
  released: boolean;
  rssBefore: number;
  rssAfter: number;
  ms: number;
}

/** One trim now; undefined where it cannot be done. */
export function trimMemory(logger: Logger): TrimResult | undefined {
  const a = trimAddon(logger);
  if (!a) return undefined;
  const rssBefore = process.memoryUsage.rss();
  const started = performance.now();
  const released = a.trim();
  return { released, rssBefore, rssAfter: process.memoryUsage.rss(), ms: performance.now() - started };
}

/** Trims now and every intervalMs after (0: never). */
export function startMemoryTrim(intervalMs: number, logger: Logger): BackgroundJob | undefined {
  if (intervalMs <= 0 || !trimAddon(logger)) return undefined;
  return startBackgroundJob(intervalMs, async () => {
    const r = trimMemory(logger);
    if (r) logger.debug({ freedMiB: Math.round((r.rssBefore - r.rssAfter) / 1048576), rssMiB: Math.round(r.rssAfter / 1048576), ms: Number(r.ms.toFixed(1)) }, "memory trimmed");
  });
}
