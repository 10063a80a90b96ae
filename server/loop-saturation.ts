import { performance, type EventLoopUtilization } from "node:perf_hooks";

// Whether this thread's event loop is saturated: busy (not waiting in epoll)
// for more than `threshold` of the last window. While a fleet connects, the
// loop does TLS handshakes back to back and heartbeats trickle in one or two
// per turn; each would otherwise be its own batch, and a batch costs the loop
// the same whatever its size (a statement, a write and a read on the
// database socket: ~0.3 ms on PostgreSQL, ./heartbeat-queue.ts). The loop's
// own measure is used, not a V8 profile's "(idle)", which also counts the
// native TLS work done in libuv's poll phase.

export interface LoopSaturation {
  /** True while the last complete window was busier than the threshold. */
  saturated(): boolean;
  stop(): void;
}

export interface LoopSaturationOptions {
  /** Share of the window the loop was busy [0.9]. */
  threshold?: number;
  /** Window length in ms [100]. */
  windowMs?: number;
}

/** Watches this thread's event loop utilization, one window at a time. */
export function watchLoopSaturation(options: LoopSaturationOptions = {}): LoopSaturation {
  const { threshold = 0.9, windowMs = 100 } = options;
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  let saturated = false;
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    saturated = performance.eventLoopUtilization(now, last).utilization > threshold;
    last = now;
  }, windowMs);
  // Measuring never keeps the process alive by itself.
  timer.unref();
  return {
    saturated: () => saturated,
    stop: () => clearInterval(timer),
  };
}
