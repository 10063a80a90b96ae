import type { Bmdb, FleetStats } from "../../bmdb/index.js";
import type { HeartbeatTraffic, TrafficSample } from "./heartbeat-traffic.js";

// What the overview shows, read through bmdb's fleet operations (the same
// FleetStats as the operator API, plus heartbeat ages) and this server's
// heartbeat traffic.

export interface HealthGroup {
  provider: string;
  location: string;
  fresh: number;
  stale: number;
  never: number;
}

export interface OverviewModel {
  now: Date;
  stats: FleetStats;
  /** Upper bounds (ms) of the age buckets; bucket i < bounds[i], the last one is older than all. */
  bounds: number[];
  /** Buckets up to and including this index are fresh. */
  freshIndex: number;
  /** Machines per age bucket, fleet-wide (bounds.length + 1 entries), and those that never heartbeat. */
  ages: number[];
  never: number;
  groups: HealthGroup[];
  traffic: { closed: readonly TrafficSample[]; current: number; slotMs: number };
}

/** Age buckets: a minute, five, the freshness threshold, an hour, a day — ascending and distinct. */
export function ageBounds(freshMs: number): { bounds: number[]; freshIndex: number } {
  const bounds = [...new Set([60_000, 300_000, freshMs, 3_600_000, 86_400_000])].sort((a, b) => a - b);
  return { bounds, freshIndex: bounds.indexOf(freshMs) };
}

export async function loadOverview(bmdb: Bmdb, traffic: HeartbeatTraffic): Promise<OverviewModel> {
  const { bounds, freshIndex } = ageBounds(bmdb.thresholds.heartbeatFreshMs);
  const [stats, rows] = await Promise.all([bmdb.fleetStats(), bmdb.heartbeatAges(bounds)]);
  const ages = new Array<number>(bounds.length + 1).fill(0);
  let never = 0;
  const groups = new Map<string, HealthGroup>();
  for (const r of rows) {
    const key = JSON.stringify([r.provider, r.location]);
    const g = groups.get(key) ?? { provider: r.provider, location: r.location, fresh: 0, stale: 0, never: 0 };
    groups.set(key, g);
    if (r.bucket === null) {
      never += r.machines;
      g.never += r.machines;
    } else {
      ages[r.bucket]! += r.machines;
      if (r.bucket <= freshIndex) g.fresh += r.machines;
      else g.stale += r.machines;
    }
  }
  return { now: bmdb.now(), stats, bounds, freshIndex, ages, never, groups: [...groups.values()], traffic: { ...traffic.samples(), slotMs: traffic.slotMs } };
}
