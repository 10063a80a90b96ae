import { sql, type Transaction } from "kysely";
import type { AdmissionState, Database, JsonValue } from "./database.js";
import { BmdbError, MachineNotFoundError } from "./errors.js";
import { EVENTS_CHANNEL } from "./events.js";
import { keyFingerprint } from "../lib/fingerprint.js";
import { hardwareMatch, storedReport, type HardwareMatch } from "./hardware-match.js";
import { recordEvent, recordEvents } from "./history.js";
import { newEventId } from "./private/event-id.js";
import type { TxContext } from "./private/tx-context.js";
import { hex } from "./private/hex.js";

// Admission of agent keys: the pending requests refused heartbeats record,
// and the decisions on them (accept, reject, automatic acceptance by an
// enrollment CA). Free functions over a transaction; Bmdb wraps each in its
// guarded SERIALIZABLE transaction. The schema and the SQL that records
// refused heartbeats are in migrations/0007_admission.ts; reading requests
// is ./agent-requests.ts.

/**
 * Bounds on pending requests, so that refused heartbeats cannot fill the
 * database: a machine holds at most maxPerMachine pending keys and the whole
 * database maxTotal. Past a bound a new key is not recorded (it is still
 * answered UNAUTHENTICATED, and counted); keys already pending keep being
 * refreshed, and an operator's accept or reject frees the place. Concurrent
 * batches check the bounds at READ COMMITTED, so they may overshoot by at most
 * the refused rows of the batches in flight.
 */
export interface AdmissionBounds {
  maxPendingPerMachine: number;
  maxPendingTotal: number;
}

export const DEFAULT_ADMISSION_BOUNDS: AdmissionBounds = { maxPendingPerMachine: 8, maxPendingTotal: 10_000 };

/** Why a heartbeat was refused, as the database saw it (the caller hears UNAUTHENTICATED for all). */
export type Refusal = "unknown_machine" | "rejected" | "pending" | "pending_new" | "machine_full" | "total_full" | "raced";

export const REFUSALS: readonly Refusal[] = ["unknown_machine", "rejected", "pending", "pending_new", "machine_full", "total_full", "raced"];

/** A heartbeat that did not authenticate, with what it carried. */
export interface RefusedHeartbeat {
  machineId: string;
  publicKey: Uint8Array;
  hardwareReport?: { raw: Uint8Array; json: JsonValue } | undefined;
}


/** Records refused heartbeats (see bmaas_record_refused); one refusal each, in input order. */
export async function recordRefused({ trx, now }: TxContext, bounds: AdmissionBounds, rows: readonly RefusedHeartbeat[]): Promise<Refusal[]> {
  const { rows: out } = await sql<{ ord: string | number | bigint; status: Refusal }>`
    select out_ord as ord, out_status as status from bmaas_record_refused(
      ${rows.map((r) => r.machineId)}::text[], ${rows.map((r) => hex(r.publicKey))}::text[],
      ${rows.map((r) => (r.hardwareReport ? hex(r.hardwareReport.raw) : null))}::text[], ${rows.map((r) => (r.hardwareReport ? JSON.stringify(r.hardwareReport.json) : null))}::text[],
      ${rows.map(() => newEventId(now))}::text[], ${now}::timestamptz, ${now.toISOString()}::text, ${EVENTS_CHANNEL}::text,
      ${bounds.maxPendingPerMachine}::int, ${bounds.maxPendingTotal}::int)
  `.execute(trx);
  const result: Refusal[] = rows.map(() => "raced");
  for (const r of out) result[Number(r.ord) - 1] = r.status;
  return result;
}

/** No pending or rejected request of that machine matches the fingerprint. */
export class AdmissionRequestNotFoundError extends BmdbError {
  constructor(readonly machineId: string, readonly fingerprint: string) {
    super(`machine ${machineId} has no pending or rejected key with fingerprint ${fingerprint}`);
    this.name = "AdmissionRequestNotFoundError";
  }
}

/** A fingerprint prefix that matches more than one key of the machine. */
export class AmbiguousFingerprintError extends BmdbError {
  constructor(readonly machineId: string, readonly fingerprint: string) {
    super(`fingerprint ${fingerprint} matches more than one key of machine ${machineId}: give more digits`);
    this.name = "AmbiguousFingerprintError";
  }
}

/** Rejecting the key a machine currently authenticates with: that is a revocation. */
export class CurrentKeyError extends BmdbError {
  constructor(readonly machineId: string, readonly fingerprint: string) {
    super(`key ${fingerprint} is the current key of machine ${machineId}: use bmctl agent revoke to refuse it`);
    this.name = "CurrentKeyError";
  }
}

/** How a key came to be admitted, for history and `machine get`. */
export interface Admission {
  state: AdmissionState;
  /** Who decided: an operator's certificate name, "import", or "enrollment CA …". */
  by: string;
  /** The history event to write. */
  event: "agent_registered" | "agent_accepted";
  /** Extra history details (the CA that admitted a key, the hardware match). */
  details?: { [key: string]: JsonValue };
}

/**
 * Makes publicKey the machine's key. An older, different key is recorded as
 * rejected ("replaced"), so that its agent is refused and asks no more; any
 * request of the new key is gone (it is admitted now).
 */
export async function admitKey(
  ctx: TxContext,
  machineId: string,
  publicKey: Uint8Array,
  admission: Admission,
): Promise<{ startedAt: Date; keyFingerprint: string; previousKeyFingerprint: string | null }> {
  const { trx, now } = ctx;
  const fingerprint = keyFingerprint(publicKey);
  const previous = await trx.selectFrom("machine_agent_started").select("agent_public_key").where("machine_id", "=", machineId).executeTakeFirst();
  const replaced = previous && !Buffer.from(previous.agent_public_key).equals(Buffer.from(publicKey)) ? previous.agent_public_key : null;
  const values = { agent_started_at: now, agent_public_key: publicKey, admission: admission.state, admitted_by: admission.by };
  await trx
    .insertInto("machine_agent_started")
    .values({ machine_id: machineId, ...values })
    .onConflict((oc) => oc.column("machine_id").doUpdateSet(values))
    .execute();
  await trx.deleteFrom("machine_agent_request").where("machine_id", "=", machineId).where("agent_public_key", "=", publicKey).execute();
  const previousKeyFingerprint = replaced ? keyFingerprint(replaced) : null;
  if (replaced) await rejectKey(trx, now, machineId, replaced, admission.by, `replaced by ${fingerprint}`);
  await recordEvent(ctx, machineId, admission.event, {
    keyFingerprint: fingerprint,
    admission: admission.state,
    by: admission.by,
    ...(previousKeyFingerprint && { previousKeyFingerprint }),
    ...admission.details,
  });
  return { startedAt: now, keyFingerprint: fingerprint, previousKeyFingerprint };
}

/** Records key as rejected for machineId (inserting or updating its request). */
async function rejectKey(trx: Transaction<Database>, now: Date, machineId: string, key: Uint8Array, by: string, reason: string | null): Promise<void> {
  const decision = { state: "rejected" as const, decided_at: now, decided_by: by, reason };
  await trx
    .insertInto("machine_agent_request")
    .values({ machine_id: machineId, agent_public_key: key, key_fingerprint: keyFingerprint(key), first_seen_at: now, last_seen_at: now, attempts: 0n, hardware_report_raw: null, hardware_report_json: null, ...decision })
    .onConflict((oc) => oc.columns(["machine_id", "agent_public_key"]).doUpdateSet(decision))
    .execute();
}

/** Called by revokeAgent: the revoked key is refused for good and asks no more. */
export function rejectKeyAfterRevocation(ctx: TxContext, machineId: string, key: Uint8Array, by: string): Promise<void> {
  return rejectKey(ctx.trx, ctx.now, machineId, key, by, "revoked");
}

interface RequestRow {
  agent_public_key: Uint8Array;
  key_fingerprint: string;
  state: "pending" | "rejected";
  hardware_report_raw: Uint8Array | null;
  hardware_report_json: JsonValue | null;
}

/** The one request of the machine whose fingerprint starts with prefix (lowercase hex). */
async function requestByFingerprint(trx: Transaction<Database>, machineId: string, prefix: string): Promise<RequestRow> {
  const rows = await trx
    .selectFrom("machine_agent_request")
    .select(["agent_public_key", "key_fingerprint", "state", "hardware_report_raw", "hardware_report_json"])
    .where("machine_id", "=", machineId)
    .where("key_fingerprint", "like", `${prefix}%`)
    .limit(2)
    .execute();
  if (rows.length > 1) throw new AmbiguousFingerprintError(machineId, prefix);
  if (!rows[0]) throw new AdmissionRequestNotFoundError(machineId, prefix);
  return rows[0];
}

async function requireMachineRow(trx: Transaction<Database>, machineId: string): Promise<{ currentKey: Uint8Array | null }> {
  const m = await trx
    .selectFrom("machines as m")
    .leftJoin("machine_agent_started as s", "s.machine_id", "m.machine_id")
    .select("s.agent_public_key")
    .where("m.machine_id", "=", machineId)
    .executeTakeFirst();
  if (!m) throw new MachineNotFoundError(machineId);
  return { currentKey: m.agent_public_key };
}

/**
 * An operator accepts the pending (or earlier rejected) key of the machine
 * whose fingerprint starts with prefix: it becomes the machine's key, the old
 * one is refused from then on. Accepting the current key again changes nothing.
 */
export async function acceptAgent(
  ctx: TxContext,
  machineId: string,
  prefix: string,
  by: string,
): Promise<{ keyFingerprint: string; previousKeyFingerprint: string | null; hardwareMatch: HardwareMatch; alreadyAccepted: boolean }> {
  const { trx } = ctx;
  const { currentKey } = await requireMachineRow(trx, machineId);
  if (currentKey && keyFingerprint(currentKey).startsWith(prefix)) {
    return { keyFingerprint: keyFingerprint(currentKey), previousKeyFingerprint: null, hardwareMatch: "no_report", alreadyAccepted: true };
  }
  const request = await requestByFingerprint(trx, machineId, prefix);
  const accepted = await trx
    .selectFrom("machine_hardware_report")
    .select(["hardware_report_raw", "hardware_report_json"])
    .where("machine_id", "=", machineId)
    .executeTakeFirst();
  const match = hardwareMatch(storedReport(request.hardware_report_raw, request.hardware_report_json), storedReport(accepted?.hardware_report_raw ?? null, accepted?.hardware_report_json ?? null));
  const r = await admitKey(ctx, machineId, request.agent_public_key, {
    state: "accepted",
    by,
    event: "agent_accepted",
    details: { via: "operator", hardwareMatch: match },
  });
  return { keyFingerprint: r.keyFingerprint, previousKeyFingerprint: r.previousKeyFingerprint, hardwareMatch: match, alreadyAccepted: false };
}

/**
 * An operator rejects a pending key: it stays refused, and its heartbeats
 * record nothing more. Rejecting a rejected key again changes nothing.
 */
export async function rejectAgent(
  ctx: TxContext,
  machineId: string,
  prefix: string,
  by: string,
  reason: string | null,
): Promise<{ keyFingerprint: string; alreadyRejected: boolean }> {
  const { trx, now } = ctx;
  const { currentKey } = await requireMachineRow(trx, machineId);
  if (currentKey && keyFingerprint(currentKey).startsWith(prefix)) throw new CurrentKeyError(machineId, keyFingerprint(currentKey));
  const request = await requestByFingerprint(trx, machineId, prefix);
  if (request.state === "rejected") return { keyFingerprint: request.key_fingerprint, alreadyRejected: true };
  await rejectKey(trx, now, machineId, request.agent_public_key, by, reason);
  await recordEvent(ctx, machineId, "agent_rejected", { keyFingerprint: request.key_fingerprint, by, ...(reason && { reason }) });
  return { keyFingerprint: request.key_fingerprint, alreadyRejected: false };
}

/**
 * Automatic admission: the agent's certificate chains to an enrollment CA and
 * names this machine. Admits the key unless the machine does not exist or an
 * operator rejected this very key (an operator's decision wins over the CA).
 * An existing different key is replaced: the CA vouches for which key is the
 * machine's agent, and a reinstalled machine with a freshly signed certificate
 * is the case this path automates. Returns whether the key was admitted.
 */
export async function admitByEnrollment(ctx: TxContext, machineId: string, publicKey: Uint8Array, ca: string): Promise<boolean> {
  const { trx } = ctx;
  const m = await trx.selectFrom("machines").select("machine_id").where("machine_id", "=", machineId).executeTakeFirst();
  if (!m) return false;
  const rejected = await trx
    .selectFrom("machine_agent_request")
    .select("state")
    .where("machine_id", "=", machineId)
    .where("agent_public_key", "=", publicKey)
    .where("state", "=", "rejected")
    .executeTakeFirst();
  if (rejected) return false;
  await admitKey(ctx, machineId, publicKey, { state: "accepted", by: `enrollment CA ${ca}`, event: "agent_accepted", details: { via: "enrollment_ca", ca } });
  return true;
}

/** A pending request that expired: its agent stopped asking. */
export interface ExpiredRequest {
  machineId: string;
  keyFingerprint: string;
  lastSeenAt: Date;
}

/**
 * Forgets up to `limit` pending requests whose agent has not asked since
 * `before` (oldest first), recording "agent_pending_expired" for each. Without
 * it an abandoned request (a machine reinstalled once more, a key that was
 * only tried) held its place under the bounds for good: once
 * maxPendingTotal abandoned keys had piled up, no new key was recorded until
 * an operator cleared them. An agent still asking keeps its request fresh
 * (every refused heartbeat refreshes last_seen_at), and one that comes back
 * later is recorded again as new. Rejected keys stay: a rejection is an
 * operator's decision.
 */
export async function expirePending(ctx: TxContext, before: Date, limit: number): Promise<ExpiredRequest[]> {
  const rows = await ctx.trx
    .deleteFrom("machine_agent_request")
    // The subquery picks them; the transaction is SERIALIZABLE, so a heartbeat
    // refreshing one of them meanwhile makes this one retry.
    .where(({ eb, refTuple, selectFrom }) =>
      eb(
        refTuple("machine_id", "agent_public_key"),
        "in",
        selectFrom("machine_agent_request")
          .select(["machine_id", "agent_public_key"])
          .where("state", "=", "pending")
          .where("last_seen_at", "<", before)
          .orderBy("last_seen_at")
          .limit(limit)
          .$asTuple("machine_id", "agent_public_key"),
      ),
    )
    .returning(["machine_id", "key_fingerprint", "last_seen_at", "attempts"])
    .execute();
  await recordEvents(
    ctx,
    rows.map((r) => ({
      machineId: r.machine_id,
      event: "agent_pending_expired" as const,
      details: { keyFingerprint: r.key_fingerprint, lastSeenAt: r.last_seen_at.toISOString(), attempts: Number(r.attempts) },
    })),
  );
  return rows.map((r) => ({ machineId: r.machine_id, keyFingerprint: r.key_fingerprint, lastSeenAt: r.last_seen_at }));
}
