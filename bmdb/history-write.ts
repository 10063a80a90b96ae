import { sql, type Transaction } from "kysely";
import type { Database, JsonValue } from "./database.js";
import { EVENTS_CHANNEL, encodeEvent, type MachineEvent, type MachineEventKind } from "./events.js";
import { newEventId } from "./private/event-id.js";

/**
 * Writes a history row and, when notify, announces it with pg_notify in the
 * same transaction: both commit or neither does. The one writer of history
 * rows from TypeScript (the heartbeat statements write their own in SQL).
 */
export async function writeHistory(
  trx: Transaction<Database>,
  notify: boolean,
  machineId: string,
  at: Date,
  event: MachineEventKind,
  details: { [key: string]: JsonValue },
): Promise<void> {
  const e: MachineEvent = { eventId: newEventId(at), machineId, occurredAt: at, event, details };
  await trx
    .insertInto("machine_history")
    .values({ event_id: e.eventId, machine_id: machineId, occurred_at: at, event, details: JSON.stringify(details) })
    .execute();
  if (notify) await sql`select pg_notify(${EVENTS_CHANNEL}, ${encodeEvent(e)})`.execute(trx);
}
