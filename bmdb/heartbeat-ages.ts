import { sql, type Kysely } from "kysely";
import type { Database } from "./database.js";

// How recent every machine's last heartbeat is, counted by provider and
// location: the fleet's heartbeat health at a glance. One grouped scan of
// machines ⟕ provided ⟕ agent (whose row holds the heartbeat), the same
// tables ListMachines reads.

export interface HeartbeatAgeCount {
  provider: string;
  location: string;
  /**
   * Index into the caller's bounds of the first bound the heartbeat is younger
   * than; bounds.length when older than all; null when it never heartbeat.
   */
  bucket: number | null;
  machines: number;
}

/** Machines by last-heartbeat age bucket (bounds in ms, ascending), per provider and location. */
export async function heartbeatAges(db: Kysely<Database>, now: Date, boundsMs: readonly number[]): Promise<HeartbeatAgeCount[]> {
  if (boundsMs.some((b, i) => i > 0 && b <= boundsMs[i - 1]!)) throw new Error("heartbeat age bounds must ascend");
  const cases = boundsMs.map((b, i) => sql`when s.agent_heartbeat_at >= ${new Date(now.getTime() - b)} then ${sql.lit(i)}`);
  const bucket = sql<number | null>`case when s.agent_heartbeat_at is null then null ${sql.join(cases, sql` `)} else ${sql.lit(boundsMs.length)} end`;
  const rows = await db
    .selectFrom("machines as m")
    .leftJoin("machine_provided as p", "p.machine_id", "m.machine_id")
    .leftJoin("machine_agent_started as s", "s.machine_id", "m.machine_id")
    .select([
      sql<string>`coalesce(p.provider, '')`.as("provider"),
      sql<string>`coalesce(p.provider_location, '')`.as("location"),
      bucket.as("bucket"),
      sql<string | number>`count(*)`.as("machines"),
    ])
    .groupBy([sql`1`, sql`2`, sql`3`])
    .orderBy(sql`1`)
    .orderBy(sql`2`)
    .execute();
  return rows.map((r) => ({ provider: r.provider, location: r.location, bucket: r.bucket === null ? null : Number(r.bucket), machines: Number(r.machines) }));
}
