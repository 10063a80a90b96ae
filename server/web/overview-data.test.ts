import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBmdb, type Bmdb } from "../../bmdb/index.js";
import { testBackends, type TestDatabase } from "../../test/helpers/databases.js";
import { testClock } from "../../test/helpers/server.js";
import { ageBounds, OverviewSnapshot } from "./overview-data.js";

describe("overview figures", () => {
  it("bucket ages around the freshness threshold, ascending and distinct", () => {
    expect(ageBounds(600_000)).toEqual({ bounds: [60_000, 300_000, 600_000, 3_600_000, 86_400_000], freshIndex: 2 });
    expect(ageBounds(60_000)).toEqual({ bounds: [60_000, 300_000, 3_600_000, 86_400_000], freshIndex: 0 });
    expect(ageBounds(30_000).bounds[0]).toBe(30_000);
  });
});

describe.each(testBackends())("the shared overview reading on $name", (backend) => {
  let tdb: TestDatabase;
  let bmdb: Bmdb;
  const clock = testClock();

  beforeAll(async () => {
    tdb = await backend.create();
    bmdb = await openBmdb(tdb.url, { clock: clock.now });
  });
  afterAll(async () => {
    await bmdb?.close();
    await tdb?.drop();
  });

  it("serves one reading while it is fresh, the old one once while a new read runs, and waits when it is too old", async () => {
    const snap = new OverviewSnapshot(bmdb, 2_000, 60_000);
    await bmdb.createMachine();
    expect((await snap.figures()).stats.counters.machines).toBe(1);
    await bmdb.createMachine();
    clock.advance(1_000);
    expect((await snap.figures()).stats.counters.machines).toBe(1);
    clock.advance(2_000);
    // Older than fresh: served at once, and a new read starts.
    expect((await snap.figures()).stats.counters.machines).toBe(1);
    await expect.poll(async () => (await snap.figures()).stats.counters.machines).toBe(2);
    await bmdb.createMachine();
    clock.advance(120_000);
    // Too old to show: the page waits for the new reading.
    expect((await snap.figures()).stats.counters.machines).toBe(3);
  });

  it("serves figures of any age at once by default, and re-reads at once after invalidate()", async () => {
    const snap = new OverviewSnapshot(bmdb);
    const before = (await snap.figures()).stats.counters.machines;
    await bmdb.createMachine();
    clock.advance(3_600_000);
    // An hour old: still served at once, with a new reading under way.
    expect((await snap.figures()).stats.counters.machines).toBe(before);
    expect(snap.revalidating).toBe(true);
    await expect.poll(async () => (await snap.figures()).stats.counters.machines).toBe(before + 1);
    await bmdb.createMachine();
    // Fresh by age, but the fleet changed: old figures once, then the new ones.
    snap.invalidate();
    expect((await snap.figures()).stats.counters.machines).toBe(before + 1);
    await expect.poll(async () => (await snap.figures()).stats.counters.machines).toBe(before + 2);
    expect(snap.revalidating).toBe(false);
  });

  it("groups heartbeat health by provider and location", async () => {
    const id = await bmdb.createMachine({ provider: { provider: "ovh", providerId: "gra-7" } });
    await bmdb.updateProvider(id, { location: "gra" });
    const f = await new OverviewSnapshot(bmdb).figures();
    expect(f.groups).toEqual(expect.arrayContaining([{ provider: "ovh", location: "gra", fresh: 0, stale: 0, never: 1 }]));
    expect(f.never).toBe(f.stats.counters.machines);
    expect(f.ages.reduce((a, b) => a + b, 0)).toBe(0);
  });
});
