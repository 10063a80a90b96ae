import { describe, expect, it } from "vitest";
import { watchLoopSaturation } from "./loop-saturation.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keeps this thread's loop busy for ms, in 10 ms turns (timers still fire between them); returns saturated() as seen at the end. */
function busyFor(ms: number, saturated: () => boolean): Promise<boolean> {
  const end = performance.now() + ms;
  return new Promise((resolve) => {
    const turn = () => {
      const until = Math.min(end, performance.now() + 10);
      while (performance.now() < until);
      if (performance.now() >= end) resolve(saturated());
      else setImmediate(turn);
    };
    setImmediate(turn);
  });
}

describe("watchLoopSaturation", () => {
  it("says saturated while the loop is busy, and not once it waits again", async () => {
    const loop = watchLoopSaturation({ threshold: 0.8, windowMs: 50 });
    try {
      await sleep(120);
      expect(loop.saturated()).toBe(false);
      expect(await busyFor(300, loop.saturated)).toBe(true);
      // A loop waiting on a timer is idle whatever else the machine is doing.
      await sleep(150);
      expect(loop.saturated()).toBe(false);
    } finally {
      loop.stop();
    }
  });
});
