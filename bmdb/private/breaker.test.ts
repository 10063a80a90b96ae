import { describe, expect, it } from "vitest";
import { Breaker, type DatabaseState } from "./breaker.js";

function fakeClock() {
  let now = 1_000;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

function recorder() {
  const changes: Array<[DatabaseState, string | undefined]> = [];
  return { changes, onStateChange: (s: DatabaseState, r?: string) => void changes.push([s, r]) };
}

describe("Breaker", () => {
  it("opens on a connection failure and refuses calls until the back-off passed, then lets one probe through", () => {
    const clock = fakeClock();
    const rec = recorder();
    const b = new Breaker({ now: clock.now, onStateChange: rec.onStateChange });
    expect(b.up).toBe(true);
    const t = b.admit()!;
    b.failed(t, "connect ECONNREFUSED");
    expect(b.up).toBe(false);
    expect(rec.changes).toEqual([["down", "connect ECONNREFUSED"]]);
    expect(b.admit()).toBeUndefined();
    clock.advance(49);
    expect(b.admit()).toBeUndefined();
    clock.advance(1);
    const probe = b.admit()!;
    expect(probe.probe).toBe(true);
    // Half-open: only the one probe is in flight.
    expect(b.admit()).toBeUndefined();
    b.succeeded(probe);
    expect(b.up).toBe(true);
    expect(rec.changes).toEqual([
      ["down", "connect ECONNREFUSED"],
      ["up", undefined],
    ]);
    expect(b.admit()?.probe).toBe(false);
  });

  it("doubles the back-off after each failed probe, up to 500 ms, and resets it once closed", () => {
    const clock = fakeClock();
    const rec = recorder();
    const b = new Breaker({ now: clock.now, onStateChange: rec.onStateChange });
    b.failed(b.admit()!, "down");
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      let waited = 0;
      let probe = b.admit();
      while (!probe) {
        clock.advance(1);
        waited++;
        probe = b.admit();
      }
      waits.push(waited);
      b.failed(probe, "still down");
    }
    expect(waits).toEqual([50, 100, 200, 400, 500, 500]);
    // Only the first failure is a change of state.
    expect(rec.changes).toEqual([["down", "down"]]);
  });

  it("ignores outcomes of calls admitted before it opened", () => {
    const clock = fakeClock();
    const b = new Breaker({ now: clock.now });
    const early = b.admit()!;
    const early2 = b.admit()!;
    b.failed(b.admit()!, "lost");
    // A slow call that started while closed succeeds late: says nothing of now.
    b.succeeded(early);
    expect(b.up).toBe(false);
    // ...nor does a late failure push the back-off.
    b.failed(early2, "lost too");
    clock.advance(50);
    expect(b.admit()?.probe).toBe(true);
  });

  it("a probe that ends in a bug lets the next call probe at once", () => {
    const clock = fakeClock();
    const b = new Breaker({ now: clock.now });
    b.failed(b.admit()!, "lost");
    clock.advance(50);
    const probe = b.admit()!;
    b.abandoned(probe);
    expect(b.admit()?.probe).toBe(true);
  });

  it("probes by itself when no call comes, so it closes without traffic", async () => {
    let probes = 0;
    let healthy = false;
    const rec = recorder();
    const b = new Breaker({
      onStateChange: rec.onStateChange,
      probe: async () => {
        probes++;
        if (!healthy) throw new Error("connect ECONNREFUSED");
      },
    });
    b.failed(b.admit()!, "connect ECONNREFUSED");
    // Two failed probes come by themselves, after 50 and then 100 ms more
    // (polled rather than slept, so a loaded machine only makes it later).
    const opened = Date.now();
    while (probes < 2 && Date.now() - opened < 3_000) await new Promise((r) => setTimeout(r, 5));
    expect(probes).toBeGreaterThanOrEqual(2);
    expect(Date.now() - opened).toBeGreaterThanOrEqual(140);
    expect(b.up).toBe(false);
    healthy = true;
    const back = Date.now();
    while (!b.up && Date.now() - back < 2_000) await new Promise((r) => setTimeout(r, 5));
    expect(b.up).toBe(true);
    // The back-off is capped at 500 ms: back within the 1 s bar.
    expect(Date.now() - back).toBeLessThan(1_000);
    expect(rec.changes.map(([s]) => s)).toEqual(["down", "up"]);
    b.stop();
  });

  it("stop() ends its probes", async () => {
    let probes = 0;
    const b = new Breaker({ probe: async () => void probes++ });
    b.failed(b.admit()!, "lost");
    b.stop();
    await new Promise((r) => setTimeout(r, 120));
    expect(probes).toBe(0);
  });
});
