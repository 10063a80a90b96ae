import { sql, type Kysely } from "kysely";
import type { Database } from "./database.js";
import { EVENTS_CHANNEL } from "./events.js";
import type { FleetThresholds } from "./fleet.js";
import { isInstallationPending } from "./pending.js";
import { newEventId } from "./private/event-id.js";

// Group commit of the common heartbeat: many agents' heartbeats (no hardware
// report, no installation report) in ONE statement, so one round trip and one
// commit (autocommit) serve a whole batch. In that statement:
//   1. authenticate every (machine_id, key) pair against machine_agent_started;
//   2. upsert the heartbeat of the authenticated ones, RETURNING the previous
//      heartbeat and stale flag (no read that could race);
//   3. from those, write the history transitions (first heartbeat, resumed
//      after stale) and announce them with pg_notify — in the same statement,
//      so they commit with the heartbeats or not at all;
//   4. return each authenticated machine's pending installation request.
// A machine must appear at most once per batch (ON CONFLICT cannot touch a row
// twice in one statement): the caller guarantees it.
//
// Isolation: the statement runs at READ COMMITTED. It is atomic on its own; a
// heartbeat racing an operator's revocation is linearised before or after it
// (see migrations/0003 for why it cannot resurrect a revoked agent's row).
// Operator operations stay SERIALIZABLE transactions.

export interface BatchHeartbeat {
  machineId: string;
  publicKey: Uint8Array;
}

export type BatchOutcome =
  | { authenticated: false }
  | { authenticated: true; installationRequest: Uint8Array | null };

interface Row {
  ord: string | number | bigint;
  request_generation: bigint | null;
  request_raw: Uint8Array | null;
  report_generation: bigint | null;
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/** Records a batch of heartbeats in one statement; outcomes in input order. */
export async function heartbeatBatch(
  db: Kysely<Database>,
  now: Date,
  thresholds: FleetThresholds,
  batch: readonly BatchHeartbeat[],
): Promise<BatchOutcome[]> {
  if (batch.length === 0) return [];
  const staleBefore = new Date(now.getTime() - thresholds.heartbeatFreshMs);
  // One pre-made event ID per row, used only by rows that make a transition.
  const eventIds = batch.map(() => newEventId(now));
  const { rows } = await sql<Row>`
    with input as (
      select t.machine_id::uuid as machine_id, decode(t.public_key, 'hex') as public_key, t.event_id::uuid as event_id, t.ord
      from unnest(${batch.map((b) => b.machineId)}::text[], ${batch.map((b) => hex(b.publicKey))}::text[], ${eventIds}::text[])
        with ordinality as t(machine_id, public_key, event_id, ord)
    ),
    auth as (
      select i.machine_id, i.event_id, i.ord from input i
      join machine_agent_started s on s.machine_id = i.machine_id and s.agent_public_key = i.public_key
    ),
    beat as (
      insert into machine_agent_heartbeat as h (machine_id, agent_heartbeat_at, previous_heartbeat_at)
      select machine_id, ${now}::timestamptz, null from auth
      on conflict (machine_id) do update set
        previous_heartbeat_at = h.agent_heartbeat_at,
        previous_stale = h.stale,
        agent_heartbeat_at = excluded.agent_heartbeat_at,
        stale = false
      returning h.machine_id, h.previous_heartbeat_at, h.previous_stale
    ),
    history as (
      insert into machine_history (event_id, machine_id, occurred_at, event, details)
      select a.event_id, b.machine_id, ${now}::timestamptz,
        case when b.previous_heartbeat_at is null then 'first_heartbeat' else 'heartbeat_resumed' end,
        case when b.previous_heartbeat_at is null then '{}'::jsonb
          else jsonb_build_object('silentForMs', floor(extract(epoch from (${now}::timestamptz - b.previous_heartbeat_at)) * 1000)::bigint) end
      from beat b join auth a on a.machine_id = b.machine_id
      where b.previous_heartbeat_at is null or b.previous_stale or b.previous_heartbeat_at <= ${staleBefore}::timestamptz
      returning event_id, machine_id, event, details
    ),
    announced as (
      select count(pg_notify(${EVENTS_CHANNEL}, json_build_object(
        'eventId', event_id, 'machineId', machine_id, 'occurredAt', ${now.toISOString()}::text, 'event', event, 'details', details)::text)) as n
      from history
    )
    select a.ord, rq.generation as request_generation, rq.installation_request_raw as request_raw, rp.generation as report_generation
    from auth a
    cross join announced
    left join machine_installation_request rq on rq.machine_id = a.machine_id
    left join machine_installation_report rp on rp.machine_id = a.machine_id
  `.execute(db);

  const outcomes: BatchOutcome[] = batch.map(() => ({ authenticated: false }));
  for (const r of rows) {
    const pending = isInstallationPending(r.request_generation, r.report_generation);
    outcomes[Number(r.ord) - 1] = { authenticated: true, installationRequest: pending ? r.request_raw : null };
  }
  return outcomes;
}
