import { describe, expect, it } from "vitest";
import { startBackgroundJob } from "./background-job.js";

describe("background jobs", () => {
  it("run at the interval when cheap, and no more than 1/share of the time when costly", async () => {
    const starts: number[] = [];
    const cheap = startBackgroundJob(20, async () => {
      starts.push(Date.now());
    });
    await new Promise((r) => setTimeout(r, 230));
    cheap.stop();
    expect(starts.length).toBeGreaterThanOrEqual(6);
    expect(starts.length).toBeLessThanOrEqual(13);

    const costly: number[] = [];
    const slow = startBackgroundJob(
      1,
      async () => {
        costly.push(Date.now());
        await new Promise((r) => setTimeout(r, 30));
      },
      { share: 5 },
    );
    await new Promise((r) => setTimeout(r, 600));
    slow.stop();
    // Each run takes ~30 ms, then waits 5× that: about 3 runs in 600 ms, not 20
    // (timers may fire a millisecond early, hence the margin; without the rule gaps would be ~31 ms).
    expect(costly.length).toBeGreaterThanOrEqual(2);
    expect(costly.length).toBeLessThanOrEqual(4);
    for (let i = 1; i < costly.length; i++) expect(costly[i]! - costly[i - 1]!).toBeGreaterThanOrEqual(140);
  });

  it("waits firstDelayMs before the first run", async () => {
    const starts: number[] = [];
    const t0 = Date.now();
    const job = startBackgroundJob(20, async () => {
      starts.push(Date.now() - t0);
    }, { firstDelayMs: 150 });
    await new Promise((r) => setTimeout(r, 100));
    expect(starts).toEqual([]);
    await new Promise((r) => setTimeout(r, 150));
    job.stop();
    expect(starts.length).toBeGreaterThanOrEqual(1);
    expect(starts[0]).toBeGreaterThanOrEqual(145);
  });
});
