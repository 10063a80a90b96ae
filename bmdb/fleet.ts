import { sql, type ExpressionBuilder, type Kysely, type SqlBool, type Expression } from "kysely";
import { countRequests, type AdmissionCounts } from "./agent-requests.js";
import type { Database } from "./database.js";

// Fleet-wide reads for operators: filtered, keyset-paginated machine lists and
// the fleet counters. Heartbeat states follow the reference: heartbeating
// while the last heartbeat is younger than heartbeatFreshMs; needs recovery
// when the agent started recoveryAfterMs ago and never heartbeat, or the last
// heartbeat is no longer fresh.

export interface FleetThresholds {
  heartbeatFreshMs: number;
  recoveryAfterMs: number;
}

export const DEFAULT_THRESHOLDS: FleetThresholds = { heartbeatFreshMs: 10 * 60_000, recoveryAfterMs: 30 * 60_000 };

export type HeartbeatState = "fresh" | "stale" | "never";

export interface ListFilter {
  heartbeat?: HeartbeatState;
  needsRecovery?: boolean;
  provider?: string;
  hasHardwareReport?: boolean;
  pendingInstallation?: boolean;
  /** Machines whose ID, provider ID or agent key fingerprint starts with this text. */
  search?: string;
}

export interface MachineSummary {
  machineId: string;
  createdAt: Date;
  provider: string | null;
  providerId: string | null;
  location: string | null;
  agentStartedAt: Date | null;
  lastHeartbeatAt: Date | null;
  heartbeat: HeartbeatState;
  needsRecovery: boolean;
  hasHardwareReport: boolean;
  installationPending: boolean;
}

const JOINED = ["m", "p", "s", "hw", "rq", "rp"] as const;
type Joined = ExpressionBuilder<
  Database & {
    m: Database["machines"];
    p: Database["machine_provided"];
    s: Database["machine_agent_started"];
    hw: Database["machine_hardware_report"];
    rq: Database["machine_installation_request"];
    rp: Database["machine_installation_report"];
  },
  (typeof JOINED)[number]
>;

/** Every machine with each of its tags, left-joined under short aliases. */
export function machinesWithTags(db: Kysely<Database>) {
  return db
    .selectFrom("machines as m")
    .leftJoin("machine_provided as p", "p.machine_id", "m.machine_id")
    .leftJoin("machine_agent_started as s", "s.machine_id", "m.machine_id")
    .leftJoin("machine_hardware_report as hw", "hw.machine_id", "m.machine_id")
    .leftJoin("machine_installation_request as rq", "rq.machine_id", "m.machine_id")
    .leftJoin("machine_installation_report as rp", "rp.machine_id", "m.machine_id");
}

/** SQL predicates of the states, shared by lists and counters. */
function predicates(eb: Joined, now: Date, t: FleetThresholds) {
  const freshSince = new Date(now.getTime() - t.heartbeatFreshMs);
  const recoverySince = new Date(now.getTime() - t.recoveryAfterMs);
  // The heartbeat is in the agent's row (migrations/0008): null without an agent or before its first.
  const fresh = eb("s.agent_heartbeat_at", ">=", freshSince);
  const stale = eb("s.agent_heartbeat_at", "<", freshSince);
  const never = eb("s.agent_heartbeat_at", "is", null);
  const needsRecovery = eb.or([eb.and([eb("s.agent_started_at", "<=", recoverySince), never]), stale]);
  const pending = eb.and([
    eb("rq.machine_id", "is not", null),
    eb.or([eb("rp.machine_id", "is", null), eb("rp.generation", "!=", eb.ref("rq.generation"))]),
  ]);
  return { fresh, stale, never, needsRecovery, pending };
}

/** text as a LIKE pattern matching itself followed by anything. */
function likePrefix(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`) + "%";
}

/**
 * A machine ID, provider ID or key fingerprint starting with text. A machine
 * ID prefix becomes a range of UUIDs (the primary key); provider IDs and
 * fingerprints are looked up in their prefix indexes (migration 0005) once
 * per query, not compared row by row.
 */
function searchPredicate(eb: Joined, db: Kysely<Database>, text: string): Expression<SqlBool> {
  const q = text.trim();
  const hex = q.toLowerCase();
  const ors: Expression<SqlBool>[] = [
    eb("m.machine_id", "in", db.selectFrom("machine_provided").select("machine_id").where(sql<SqlBool>`provider_id like ${likePrefix(q)}`)),
  ];
  const idHex = hex.replace(/-/g, "");
  if (/^[0-9a-f]{1,32}$/.test(idHex)) {
    const uuid = (h: string) => `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    ors.push(eb.and([eb("m.machine_id", ">=", uuid(idHex.padEnd(32, "0"))), eb("m.machine_id", "<=", uuid(idHex.padEnd(32, "f")))]));
  }
  // Fingerprints are SHA-256 of the key, lowercase hex, as bmdb/fingerprint.ts makes them.
  if (/^[0-9a-f]{1,64}$/.test(hex)) {
    ors.push(
      eb("m.machine_id", "in", db.selectFrom("machine_agent_started").select("machine_id").where(sql<SqlBool>`encode(sha256(agent_public_key), 'hex') like ${likePrefix(hex)}`)),
    );
  }
  return eb.or(ors);
}

/** One page of machines in machine_id order, after the given ID. */
export async function listMachines(
  db: Kysely<Database>,
  now: Date,
  t: FleetThresholds,
  filter: ListFilter,
  pageSize: number,
  after: string | undefined,
): Promise<{ machines: MachineSummary[]; nextAfter: string | undefined }> {
  const freshSince = new Date(now.getTime() - t.heartbeatFreshMs);
  // Two steps so that each is cheap on large fleets: first the page's IDs,
  // using only the joins the filters need (PostgreSQL drops unused left joins
  // on unique keys), then every column of just those machines. Joining every
  // tag of every candidate before the LIMIT made filtered pages scan and sort
  // thousands of rows.
  const pageIds = machinesWithTags(db)
    .select("m.machine_id")
    .where((eb) => {
      const p = predicates(eb, now, t);
      const conds: Expression<SqlBool>[] = [];
      if (after) conds.push(eb("m.machine_id", ">", after));
      if (filter.heartbeat) conds.push(p[filter.heartbeat]);
      if (filter.needsRecovery !== undefined) conds.push(filter.needsRecovery ? p.needsRecovery : eb.not(eb.fn.coalesce(p.needsRecovery as Expression<SqlBool>, sql<SqlBool>`false`)));
      if (filter.provider !== undefined) conds.push(eb("p.provider", "=", filter.provider));
      if (filter.hasHardwareReport !== undefined) conds.push(eb("hw.machine_id", filter.hasHardwareReport ? "is not" : "is", null));
      if (filter.pendingInstallation !== undefined) conds.push(filter.pendingInstallation ? p.pending : eb.not(eb.fn.coalesce(p.pending as Expression<SqlBool>, sql<SqlBool>`false`)));
      if (filter.search) conds.push(searchPredicate(eb, db, filter.search));
      return eb.and(conds);
    })
    .orderBy("m.machine_id")
    .limit(pageSize + 1);
  const rows = await machinesWithTags(db)
    .select((eb) => {
      const p = predicates(eb, now, t);
      return [
        "m.machine_id",
        "m.created_at",
        "p.provider",
        "p.provider_id",
        "p.provider_location",
        "s.agent_started_at",
        "s.agent_heartbeat_at",
        eb.fn.coalesce(p.needsRecovery as Expression<SqlBool>, sql<SqlBool>`false`).as("needs_recovery"),
        eb("hw.machine_id", "is not", null).as("has_hw"),
        eb.fn.coalesce(p.pending as Expression<SqlBool>, sql<SqlBool>`false`).as("pending"),
      ];
    })
    .where("m.machine_id", "in", pageIds)
    .orderBy("m.machine_id")
    .execute();
  const page = rows.slice(0, pageSize);
  return {
    machines: page.map((r) => ({
      machineId: r.machine_id,
      createdAt: r.created_at,
      provider: r.provider,
      providerId: r.provider_id,
      location: r.provider_location,
      agentStartedAt: r.agent_started_at,
      lastHeartbeatAt: r.agent_heartbeat_at,
      heartbeat: r.agent_heartbeat_at === null ? "never" : r.agent_heartbeat_at >= freshSince ? "fresh" : "stale",
      needsRecovery: Boolean(r.needs_recovery),
      hasHardwareReport: Boolean(r.has_hw),
      installationPending: Boolean(r.pending),
    })),
    nextAfter: rows.length > pageSize ? page.at(-1)!.machine_id : undefined,
  };
}

export interface FleetCounters {
  machines: number;
  provided: number;
  heartbeating: number;
  pendingInstallation: number;
  installed: number;
  pendingAgentStart: number;
  pendingRecovery: number;
}

export interface HardwareTotals {
  provider: string;
  location: string;
  nodes: number;
  cpuThreads: number;
  memoryBytes: bigint;
}

export interface FleetStats {
  counters: FleetCounters;
  hardware: HardwareTotals[];
  /** Admission requests by state (bmdb/admission.ts). */
  admission: AdmissionCounts;
}

/** The fleet counters of the original, and hardware totals by provider and location. */
export async function fleetStats(db: Kysely<Database>, now: Date, t: FleetThresholds): Promise<FleetStats> {
  // Counting is a scan of every tag table. PostgreSQL would plan it with two
  // parallel workers: with 1,000,000 machines that took both cores of a
  // 2-core server for ~0.5 s (1.5 s of CPU) at every gauge refresh, and the
  // heartbeats of those seconds waited (the large-database p99). One process
  // takes ~0.8 s of one core instead and leaves the other to the heartbeats.
  // (Runs inside the caller's transaction, so the setting ends with it.)
  await sql`set local max_parallel_workers_per_gather = 0`.execute(db);
  const c = await machinesWithTags(db)
    .select((eb) => {
      const p = predicates(eb, now, t);
      const count = (e: Expression<SqlBool>) => eb.fn.sum<string | number>(sql`case when ${e} then 1 else 0 end`);
      return [
        eb.fn.countAll<string | number>().as("machines"),
        eb.fn.count<string | number>("p.machine_id").as("provided"),
        count(p.fresh).as("heartbeating"),
        count(p.pending).as("pending_installation"),
        count(eb.and([eb("rp.generation", "=", eb.ref("rq.generation")), eb("rp.result", "=", "success")])).as("installed"),
        count(eb.and([eb("p.machine_id", "is not", null), eb("s.machine_id", "is", null)])).as("pending_agent_start"),
        count(p.needsRecovery).as("pending_recovery"),
      ];
    })
    .executeTakeFirstOrThrow();
  const n = (v: string | number | null) => Number(v ?? 0);

  // Threads and memory: the typed columns the heartbeat path writes with each report.
  const hw = await db
    .selectFrom("machine_hardware_report as hw")
    .leftJoin("machine_provided as p", "p.machine_id", "hw.machine_id")
    .select([
      sql<string>`coalesce(p.provider, '')`.as("provider"),
      sql<string>`coalesce(p.provider_location, '')`.as("location"),
      sql<string | number>`count(*)`.as("nodes"),
      sql<string | number | null>`sum(hw.cpu_threads)`.as("threads"),
      sql<string | null>`sum(hw.memory_bytes)::text`.as("memory"),
    ])
    .groupBy([sql`coalesce(p.provider, '')`, sql`coalesce(p.provider_location, '')`])
    .orderBy(sql`coalesce(p.provider, '')`)
    .orderBy(sql`coalesce(p.provider_location, '')`)
    .execute();

  return {
    admission: await countRequests(db),
    counters: {
      machines: n(c.machines),
      provided: n(c.provided),
      heartbeating: n(c.heartbeating),
      pendingInstallation: n(c.pending_installation),
      installed: n(c.installed),
      pendingAgentStart: n(c.pending_agent_start),
      pendingRecovery: n(c.pending_recovery),
    },
    hardware: hw.map((r) => ({
      provider: r.provider,
      location: r.location,
      nodes: n(r.nodes),
      cpuThreads: n(r.threads),
      memoryBytes: BigInt((r.memory ?? "0").split(".")[0]!),
    })),
  };
}
