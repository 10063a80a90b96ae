import { sql } from "kysely";
import type { JsonValue } from "./database.js";
import { MachineNotFoundError } from "./errors.js";
import { EVENTS_CHANNEL, encodeEvent, type MachineEvent, type MachineEventKind } from "./events.js";
import { newEventId } from "./private/event-id.js";
import type { TxContext } from "./private/tx-context.js";

// A machine's history: the one writer of history rows (each also announced
// with NOTIFY in the same transaction), the paginated read, and the sweep
// that records heartbeats going stale.

/** History rows an agent can cause, per machine and kind, within AGENT_EVENT_WINDOW_MS. */
export const AGENT_EVENTS_PER_WINDOW = 20;
const AGENT_EVENT_WINDOW_MS = 3_600_000;

export interface HistoryPage {
  events: MachineEvent[];
  /** Cursor for the next (older) page. */
  next: { occurredAt: Date; eventId: string } | undefined;
}

export type EventDetails = { [key: string]: JsonValue };

/**
 * Writes a history row at ctx.now and announces it; both commit or neither
 * does. A row caused by what an agent sent (byAgent), not by an operator or
 * the server, is bounded in rate per machine and kind, so that an agent
 * flipping its report back and forth cannot grow history without end; past
 * the bound the caller's tag is still updated, only the history row is
 * skipped.
 */
export async function recordEvent(
  ctx: TxContext,
  machineId: string,
  event: MachineEventKind,
  details: EventDetails,
  { byAgent = false }: { byAgent?: boolean } = {},
): Promise<void> {
  const { trx, now: at } = ctx;
  if (byAgent) {
    const since = new Date(at.getTime() - AGENT_EVENT_WINDOW_MS);
    const { n } = await trx
      .selectFrom("machine_history")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .where("machine_id", "=", machineId)
      .where("occurred_at", ">", since)
      .where("event", "=", event)
      .executeTakeFirstOrThrow();
    if (Number(n) >= AGENT_EVENTS_PER_WINDOW) return;
  }
  await recordEvents(ctx, [{ machineId, event, details }]);
}

/**
 * Writes history rows at ctx.now and announces each, in one statement
 * whatever their number (callers bound it): the rows and their notifications
 * go together.
 */
export async function recordEvents(ctx: TxContext, items: readonly { machineId: string; event: MachineEventKind; details: EventDetails }[]): Promise<void> {
  if (items.length === 0) return;
  const { trx, now: at } = ctx;
  const events: MachineEvent[] = items.map((x) => ({ eventId: newEventId(at), occurredAt: at, ...x }));
  const inserted = sql`insert into machine_history (event_id, machine_id, occurred_at, event, details)
    select e.event_id, e.machine_id, ${at}::timestamptz, e.event, e.details::jsonb
    from unnest(${events.map((e) => e.eventId)}::uuid[], ${events.map((e) => e.machineId)}::uuid[], ${events.map((e) => e.event)}::text[],
      ${events.map((e) => JSON.stringify(e.details))}::text[]) as e(event_id, machine_id, event, details)`;
  if (!ctx.notify) {
    await inserted.execute(trx);
    return;
  }
  // A CTE that writes runs to completion though nothing reads it; the
  // notifications are delivered at commit, with the rows.
  await sql`with inserted as (${inserted})
    select count(pg_notify(${EVENTS_CHANNEL}, p)) from unnest(${events.map(encodeEvent)}::text[]) as p`.execute(trx);
}

/** A machine's history, newest first; works for deleted machines too. */
export async function getHistory(
  { trx }: TxContext,
  machineId: string,
  pageSize: number,
  before?: { occurredAt: Date; eventId: string },
): Promise<HistoryPage> {
  let q = trx.selectFrom("machine_history").selectAll().where("machine_id", "=", machineId);
  if (before) {
    q = q.where((eb) =>
      eb.or([
        eb("occurred_at", "<", before.occurredAt),
        eb.and([eb("occurred_at", "=", before.occurredAt), eb("event_id", "<", before.eventId)]),
      ]),
    );
  }
  const rows = await q.orderBy("occurred_at", "desc").orderBy("event_id", "desc").limit(pageSize + 1).execute();
  if (rows.length === 0 && !before) {
    const exists = await trx.selectFrom("machines").select("machine_id").where("machine_id", "=", machineId).executeTakeFirst();
    if (!exists) throw new MachineNotFoundError(machineId);
  }
  const events = rows.slice(0, pageSize).map((r) => ({
    eventId: r.event_id,
    machineId: r.machine_id,
    occurredAt: r.occurred_at,
    event: r.event as MachineEventKind,
    details: r.details as EventDetails,
  }));
  const last = events.at(-1);
  return { events, next: rows.length > pageSize && last ? { occurredAt: last.occurredAt, eventId: last.eventId } : undefined };
}

/** Machines one sweep transaction marks stale at most (bmdb.ts runs as many as it takes). */
export const SWEEP_CHUNK = 2_000;

/**
 * Marks up to `limit` machines whose last heartbeat is no longer fresh as
 * stale, once, recording "heartbeat_stale" for each; returns them. Run
 * periodically by every server; the stale flag makes concurrent sweeps record
 * each transition once.
 */
export async function sweepStale(ctx: TxContext, limit: number): Promise<string[]> {
  const since = new Date(ctx.now.getTime() - ctx.thresholds.heartbeatFreshMs);
  const rows = await ctx.trx
    .updateTable("machine_agent_started")
    .set({ stale: true })
    // The subquery picks them; the transaction is SERIALIZABLE, so a sweep
    // on another server marking one of them meanwhile makes this one retry.
    .where("machine_id", "in", (eb) =>
      eb.selectFrom("machine_agent_started").select("machine_id").where("stale", "=", false).where("agent_heartbeat_at", "<", since).limit(limit),
    )
    .returning(["machine_id", "agent_heartbeat_at"])
    .execute();
  await recordEvents(
    ctx,
    // agent_heartbeat_at < since matched only rows that have one.
    rows.map((r) => ({ machineId: r.machine_id, event: "heartbeat_stale", details: { lastHeartbeatAt: r.agent_heartbeat_at!.toISOString() } })),
  );
  return rows.map((r) => r.machine_id);
}
