import { sql, type Kysely } from "kysely";
import type { AdmissionBounds, Refusal } from "./admission.js";
import type { Database } from "./database.js";
import { EVENTS_CHANNEL } from "./events.js";
import type { FleetThresholds } from "./fleet.js";
import { isInstallationPending } from "./pending.js";
import { newEventId } from "./private/event-id.js";
import { hex } from "./private/hex.js";

// Group commit of the common heartbeat: many agents' heartbeats (no hardware
// report, no installation report) in ONE statement, so one round trip and one
// commit (autocommit) serve a whole batch. In that statement:
//   1.+2. one UPDATE of the agents' rows in machine_agent_started, matching
//      machine_id and key: it authenticates and writes the heartbeat, one
//      primary-key lookup per heartbeat (migrations/0008), RETURNING the
//      previous heartbeat and stale flag (no read that could race);
//   3. from those, write the history transitions (first heartbeat, resumed
//      after stale) and announce them with pg_notify — in the same statement,
//      so they commit with the heartbeats or not at all;
//   4. return each authenticated machine's pending installation request;
//   5. only when some heartbeat did not authenticate: record those as pending
//      requests within bounds (bmdb/admission.ts, migrations/0007), with a
//      refusal reason each — nothing for an unknown machine or a rejected key.
// A machine must appear at most once per batch (an UPDATE touches a row once
// per statement): the caller guarantees it.
//
// Isolation: the statement runs at READ COMMITTED. It is atomic on its own; a
// heartbeat racing an operator's revocation or key replacement is linearised
// before or after it: the UPDATE re-checks the key on the row's newest version.
// Operator operations stay SERIALIZABLE transactions.

export interface BatchHeartbeat {
  machineId: string;
  publicKey: Uint8Array;
}

export type BatchOutcome =
  | { authenticated: false; refusal: Refusal }
  | { authenticated: true; installationRequest: Uint8Array | null };

interface Row {
  ord: string | number | bigint;
  status: "ok" | Refusal;
  request_generation: bigint | null;
  request_raw: Uint8Array | null;
  report_generation: bigint | null;
}


/** Records a batch of heartbeats in one statement; outcomes in input order. */
export async function heartbeatBatch(
  db: Kysely<Database>,
  now: Date,
  thresholds: FleetThresholds,
  bounds: AdmissionBounds,
  batch: readonly BatchHeartbeat[],
): Promise<BatchOutcome[]> {
  if (batch.length === 0) return [];
  const staleBefore = new Date(now.getTime() - thresholds.heartbeatFreshMs);
  // One pre-made event ID per row, used only by rows that make a transition.
  const eventIds = batch.map(() => newEventId(now));
  // The statement itself is the function bmaas_heartbeat_batch (migrations/
  // 0004; its query now 0008's): PL/pgSQL keeps its plan, planning it per call
  // cost more than running it.
  const { rows } = await sql<Row>`
    select out_ord as ord, out_status as status, out_request_generation as request_generation, out_request_raw as request_raw, out_report_generation as report_generation
    from bmaas_heartbeat_batch(
      ${batch.map((b) => b.machineId)}::text[], ${batch.map((b) => hex(b.publicKey))}::text[], ${eventIds}::text[],
      ${now}::timestamptz, ${staleBefore}::timestamptz, ${now.toISOString()}::text, ${EVENTS_CHANNEL}::text,
      ${bounds.maxPendingPerMachine}::int, ${bounds.maxPendingTotal}::int)
  `.execute(db);

  // A row the refused-rows tail skipped was registered while the batch ran.
  const outcomes: BatchOutcome[] = batch.map(() => ({ authenticated: false, refusal: "raced" }));
  for (const r of rows) {
    if (r.status !== "ok") {
      outcomes[Number(r.ord) - 1] = { authenticated: false, refusal: r.status };
      continue;
    }
    const pending = isInstallationPending(r.request_generation, r.report_generation);
    outcomes[Number(r.ord) - 1] = { authenticated: true, installationRequest: pending ? r.request_raw : null };
  }
  return outcomes;
}
