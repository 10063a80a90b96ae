import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DiskProbe, syncPercentiles } from "./disk-probe.js";

const dir = mkdtempSync(join(tmpdir(), "disk-probe-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("DiskProbe", () => {
  it("syncs its own file on its period until stopped, and finds the slowest sync of a window", async () => {
    const file = join(dir, "probe");
    const started = Date.now();
    const probe = await DiskProbe.start(file, 5);
    await new Promise((r) => setTimeout(r, 200));
    await probe.stop();
    const n = probe.syncs.length;
    await new Promise((r) => setTimeout(r, 30));
    expect(probe.syncs.length).toBe(n); // stopped means stopped

    expect(n).toBeGreaterThan(5);
    expect(statSync(file).size).toBe(Math.min(n, 256) * 4096);
    for (const [i, s] of probe.syncs.entries()) {
      expect(s.ms).toBeGreaterThanOrEqual(0);
      expect(s.t).toBeGreaterThanOrEqual(i === 0 ? started : probe.syncs[i - 1]!.t);
    }
    const max = Math.max(...probe.syncs.map((s) => s.ms));
    expect(probe.slowestIn(started, Date.now() + 1)).toBe(max);
    expect(probe.slowestIn(started - 10_000, started - 1)).toBeUndefined();
    expect(probe.slowerThan(-1)).toHaveLength(n);
    expect(probe.slowerThan(max)).toEqual([]);
  });
});

describe("syncPercentiles", () => {
  it("gives p50, p99 and max of the durations, zeros for none", () => {
    const syncs = Array.from({ length: 200 }, (_, i) => ({ t: i, ms: i === 7 ? 400 : i === 9 ? 300 : (i % 10) / 10 }));
    expect(syncPercentiles(syncs)).toEqual({ count: 200, p50: 0.5, p99: 300, max: 400 });
    expect(syncPercentiles([])).toEqual({ count: 0, p50: 0, p99: 0, max: 0 });
  });
});
