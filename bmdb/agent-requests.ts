import type { Kysely, Transaction } from "kysely";
import type { Database, JsonValue } from "./database.js";
import { keyFingerprint } from "../lib/fingerprint.js";
import { hardwareMatch, storedReport, type HardwareMatch } from "./hardware-match.js";

// Pending and rejected keys as operators read them: filtered pages (with the
// re-keyed machine's current key and the hardware match) and counts. The
// writes are in ./admission.ts.

/** One request, as operators see it. */
export interface AgentRequestView {
  machineId: string;
  keyFingerprint: string;
  publicKey: Uint8Array;
  state: "pending" | "rejected";
  firstSeenAt: Date;
  lastSeenAt: Date;
  attempts: bigint;
  /** The machine's current key, when it has one: a pending key then means a re-keyed agent. */
  currentKeyFingerprint: string | null;
  /** The pending agent's hardware report against the machine's last accepted one. */
  hardwareMatch: HardwareMatch;
  hasHardwareReport: boolean;
  provider: string | null;
  providerId: string | null;
  decidedAt: Date | null;
  decidedBy: string | null;
  reason: string | null;
}

export interface RequestFilter {
  state?: "pending" | "rejected";
  machineId?: string;
  provider?: string;
  /** Only requests of machines that already have a key (re-keyed agents), or only of those without. */
  rekeyed?: boolean;
}

export interface RequestCursor {
  machineId: string;
  keyFingerprint: string;
}

/** Requests in (machine, fingerprint) order, a page at a time. */
export async function listRequests(
  db: Kysely<Database> | Transaction<Database>,
  filter: RequestFilter,
  pageSize: number,
  after?: RequestCursor,
): Promise<{ requests: AgentRequestView[]; next: RequestCursor | undefined }> {
  let q = db
    .selectFrom("machine_agent_request as r")
    .leftJoin("machine_agent_started as s", "s.machine_id", "r.machine_id")
    .leftJoin("machine_provided as p", "p.machine_id", "r.machine_id")
    .leftJoin("machine_hardware_report as hw", "hw.machine_id", "r.machine_id")
    .select([
      "r.machine_id",
      "r.key_fingerprint",
      "r.agent_public_key",
      "r.state",
      "r.first_seen_at",
      "r.last_seen_at",
      "r.attempts",
      "r.hardware_report_raw",
      "r.hardware_report_json",
      "r.decided_at",
      "r.decided_by",
      "r.reason",
      "s.agent_public_key as current_key",
      "p.provider",
      "p.provider_id",
      "hw.hardware_report_raw as accepted_raw",
      "hw.hardware_report_json as accepted_json",
    ]);
  if (filter.state) q = q.where("r.state", "=", filter.state);
  if (filter.machineId) q = q.where("r.machine_id", "=", filter.machineId);
  if (filter.provider !== undefined) q = q.where("p.provider", "=", filter.provider);
  if (filter.rekeyed !== undefined) q = q.where("s.machine_id", filter.rekeyed ? "is not" : "is", null);
  if (after) {
    q = q.where((eb) =>
      eb.or([eb("r.machine_id", ">", after.machineId), eb.and([eb("r.machine_id", "=", after.machineId), eb("r.key_fingerprint", ">", after.keyFingerprint)])]),
    );
  }
  const rows = await q.orderBy("r.machine_id").orderBy("r.key_fingerprint").limit(pageSize + 1).execute();
  const requests = rows.slice(0, pageSize).map(
    (r): AgentRequestView => ({
      machineId: r.machine_id,
      keyFingerprint: r.key_fingerprint,
      publicKey: r.agent_public_key,
      state: r.state,
      firstSeenAt: r.first_seen_at,
      lastSeenAt: r.last_seen_at,
      attempts: BigInt(r.attempts),
      currentKeyFingerprint: r.current_key ? keyFingerprint(r.current_key) : null,
      hardwareMatch: hardwareMatch(storedReport(r.hardware_report_raw, r.hardware_report_json), storedReport(r.accepted_raw, r.accepted_json)),
      hasHardwareReport: r.hardware_report_raw !== null,
      provider: r.provider,
      providerId: r.provider_id,
      decidedAt: r.decided_at,
      decidedBy: r.decided_by,
      reason: r.reason,
    }),
  );
  const last = requests.at(-1);
  return { requests, next: rows.length > pageSize && last ? { machineId: last.machineId, keyFingerprint: last.keyFingerprint } : undefined };
}

export interface AdmissionCounts {
  pending: number;
  /** Pending keys of machines that already have a key: re-keyed agents. */
  rekeyedPending: number;
  rejected: number;
}

/** Counts of requests by state, for fleet stats and metrics. */
export async function countRequests(db: Kysely<Database> | Transaction<Database>): Promise<AdmissionCounts> {
  const r = await db
    .selectFrom("machine_agent_request as r")
    .leftJoin("machine_agent_started as s", "s.machine_id", "r.machine_id")
    .select((eb) => [
      eb.fn.count<string>("r.machine_id").filterWhere("r.state", "=", "pending").as("pending"),
      eb.fn.count<string>("r.machine_id").filterWhere("r.state", "=", "rejected").as("rejected"),
      eb.fn.count<string>("r.machine_id").filterWhere((w) => w.and([w("r.state", "=", "pending"), w("s.machine_id", "is not", null)])).as("rekeyed"),
    ])
    .executeTakeFirstOrThrow();
  return { pending: Number(r.pending), rejected: Number(r.rejected), rekeyedPending: Number(r.rekeyed) };
}
