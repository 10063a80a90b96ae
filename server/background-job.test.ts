import { describe, expect, it } from "vitest";
import { startBackgroundJob } from "./background-job.js";

/** Resolves once runs holds n entries; fails after timeoutMs. Counting runs, not
 * watching a wall-clock window, keeps the test steady on a loaded CI machine:
 * load only delays timers, and every assertion below is a lower or upper bound
 * that a delay cannot break. */
async function waitForRuns(runs: number[], n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (runs.length < n) {
    if (Date.now() > deadline) throw new Error(`only ${runs.length} of ${n} runs in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function gaps(runs: number[]): number[] {
  return runs.slice(1).map((t, i) => t - runs[i]!);
}

describe("background jobs", () => {
  it("run at the interval when cheap, and no more than 1/share of the time when costly", async () => {
    const cheap: number[] = [];
    const fast = startBackgroundJob(20, async () => {
      cheap.push(Date.now());
    });
    await waitForRuns(cheap, 6, 5_000);
    fast.stop();
    // Never before the interval (timers may fire a millisecond early)…
    for (const gap of gaps(cheap)) expect(gap).toBeGreaterThanOrEqual(19);
    // …and a cheap run does not stretch it: with share 100 even a 1 ms run would
    // pause 100 ms, so at least one gap near 20 ms shows the interval governs.
    expect(Math.min(...gaps(cheap))).toBeLessThan(90);

    const costly: number[] = [];
    const slow = startBackgroundJob(
      1,
      async () => {
        costly.push(Date.now());
        await new Promise((r) => setTimeout(r, 30));
      },
      { share: 5 },
    );
    await waitForRuns(costly, 3, 5_000);
    slow.stop();
    // Each run takes ≥ 30 ms, then waits 5× that: gaps ≥ 180 ms less a timer's
    // early millisecond or two; without the rule they would be ~31 ms.
    for (const gap of gaps(costly)) expect(gap).toBeGreaterThanOrEqual(170);
  });

  it("waits firstDelayMs before the first run", async () => {
    const starts: number[] = [];
    const t0 = Date.now();
    const job = startBackgroundJob(20, async () => {
      starts.push(Date.now() - t0);
    }, { firstDelayMs: 150 });
    await new Promise((r) => setTimeout(r, 100));
    // A loaded machine may wake this test late; only runs seen before 145 ms count against it.
    if (Date.now() - t0 < 145) expect(starts).toEqual([]);
    await waitForRuns(starts, 1, 5_000);
    job.stop();
    expect(starts[0]).toBeGreaterThanOrEqual(145);
  });
});
