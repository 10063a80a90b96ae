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
  /** When the fleet figures were read (a shared snapshot, see OverviewSnapshot). */
  asOf: Date;
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
  /** A newer reading is under way: the page fetches it again in a moment. */
  revalidating: boolean;
}

/** Age buckets: a minute, five, the freshness threshold, an hour, a day — ascending and distinct. */
export function ageBounds(freshMs: number): { bounds: number[]; freshIndex: number } {
  const bounds = [...new Set([60_000, 300_000, freshMs, 3_600_000, 86_400_000])].sort((a, b) => a - b);
  return { bounds, freshIndex: bounds.indexOf(freshMs) };
}

type Figures = Omit<OverviewModel, "now" | "traffic" | "revalidating">;

async function readFigures(bmdb: Bmdb): Promise<Figures> {
  const { bounds, freshIndex } = ageBounds(bmdb.thresholds.heartbeatFreshMs);
  const asOf = bmdb.now();
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
  return { asOf, stats, bounds, freshIndex, ages, never, groups: [...groups.values()] };
}

/**
 * The fleet figures, shared by every viewer. Counting a fleet is a scan of
 * every machine (≈0.6 s for FleetStats on 100,000 machines on PostgreSQL),
 * far too slow to run per page view and per viewer: one read at a time runs,
 * its result serves every page for freshForMs, and a page that finds older
 * figures (younger than usableForMs) is served them at once while a new read
 * starts. Older than that, or none yet, the page waits for a read. The web
 * view primes a reading when it starts and shows figures of any age (the page
 * says how old they are), so that no page waits for a fleet scan: the
 * overview stays within its 200 ms on a 100,000-machine fleet even for the
 * first viewer after a quiet hour. A committed machine event makes the
 * figures stale at once, and a page served while a new reading runs fetches
 * itself again shortly (app.js), so changes still show within a second or so.
 */
export class OverviewSnapshot {
  #latest: Figures | undefined;
  #reading: Promise<Figures> | undefined;
  #dirty = false;

  constructor(
    private readonly bmdb: Bmdb,
    readonly freshForMs = 2_000,
    readonly usableForMs = Infinity,
  ) {}

  /** Starts a reading now, so that the first page need not wait for one. */
  prime(onError: (err: unknown) => void): void {
    this.#read().catch(onError);
  }

  /** The fleet changed: the next page starts a new reading. */
  invalidate(): void {
    this.#dirty = true;
  }

  /** Whether a reading is under way. */
  get revalidating(): boolean {
    return this.#reading !== undefined;
  }

  #read(): Promise<Figures> {
    if (!this.#reading) this.#dirty = false;
    return (this.#reading ??= readFigures(this.bmdb).then(
      (f) => {
        this.#latest = f;
        this.#reading = undefined;
        return f;
      },
      (e: unknown) => {
        this.#reading = undefined;
        throw e;
      },
    ));
  }

  async figures(): Promise<Figures> {
    const latest = this.#latest;
    const age = latest ? this.bmdb.now().getTime() - latest.asOf.getTime() : Infinity;
    if (latest && age < this.freshForMs && !this.#dirty) return latest;
    if (latest && age < this.usableForMs) {
      // Served as they are; the next view gets the new read. A failed read is
      // told by the next page that has to wait for one.
      this.#read().catch(() => {});
      return latest;
    }
    return this.#read();
  }
}

export async function loadOverview(bmdb: Bmdb, snapshot: OverviewSnapshot, traffic: HeartbeatTraffic): Promise<OverviewModel> {
  const figures = await snapshot.figures();
  return { ...figures, now: bmdb.now(), traffic: { ...traffic.samples(), slotMs: traffic.slotMs }, revalidating: snapshot.revalidating };
}
