import type { JsonValue } from "./database.js";

/** The name of the NOTIFY channel history writes announce themselves on. */
export const EVENTS_CHANNEL = "bmaas_machine_events";

/** What happened to a machine; one history row each. */
export type MachineEventKind =
  | "machine_created"
  | "machine_deleted"
  | "provider_updated"
  | "agent_registered"
  | "agent_revoked"
  | "agent_pending"
  | "agent_accepted"
  | "agent_rejected"
  | "agent_pending_expired"
  | "machine_imported"
  | "first_heartbeat"
  | "heartbeat_stale"
  | "heartbeat_resumed"
  | "hardware_report_changed"
  | "installation_requested"
  | "installation_reported";

export interface MachineEvent {
  eventId: string;
  machineId: string;
  occurredAt: Date;
  event: MachineEventKind;
  details: { [key: string]: JsonValue };
}

/** Delivered to subscribers: an event, or word that some may have been missed. */
export type EventDelivery = { kind: "event"; event: MachineEvent } | { kind: "gap"; reason: string };

export type EventListener = (delivery: EventDelivery) => void;

// NOTIFY payloads are limited to 8000 bytes; details carry agent-supplied
// text (installation errors), so long strings are cut.
// History rows keep agent text to the same length.
export const MAX_DETAIL_CHARS = 1000;

/** text cut to MAX_DETAIL_CHARS characters (an ellipsis marks a cut). */
export function cutDetailText(text: string): string {
  return text.length > MAX_DETAIL_CHARS ? text.slice(0, MAX_DETAIL_CHARS) + "…" : text;
}

function cut(details: { [key: string]: JsonValue }): { [key: string]: JsonValue } {
  return Object.fromEntries(Object.entries(details).map(([k, v]) => [k, typeof v === "string" ? cutDetailText(v) : v]));
}

export function encodeEvent(e: MachineEvent): string {
  return JSON.stringify({ ...e, occurredAt: e.occurredAt.toISOString(), details: cut(e.details) });
}

export function decodeEvent(payload: string): MachineEvent {
  const raw = JSON.parse(payload) as Omit<MachineEvent, "occurredAt"> & { occurredAt: string };
  return { ...raw, occurredAt: new Date(raw.occurredAt) };
}

/** A source of database notifications; started on the first subscriber. */
export interface NotificationSource {
  /** Begins listening; onPayload gets each payload, onGap each interruption. */
  start(onPayload: (payload: string) => void, onGap: (reason: string) => void): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Fans database notifications out to in-process subscribers. Subscribers are
 * called synchronously and must not block: the server's watch streams queue
 * (and bound) what they get.
 */
export class EventHub {
  readonly #listeners = new Set<EventListener>();
  #started: Promise<void> | undefined;

  constructor(private readonly source: NotificationSource) {}

  /** Starts listening (idempotent); subscribe() calls it too. */
  start(): Promise<void> {
    return (this.#started ??= this.source.start(
      (payload) => this.#emit({ kind: "event", event: decodeEvent(payload) }),
      (reason) => this.#emit({ kind: "gap", reason }),
    ));
  }

  async subscribe(listener: EventListener): Promise<() => void> {
    this.#listeners.add(listener);
    try {
      await this.start();
    } catch (e) {
      this.#listeners.delete(listener);
      this.#started = undefined;
      throw e;
    }
    return () => this.#listeners.delete(listener);
  }

  #emit(d: EventDelivery): void {
    for (const l of this.#listeners) l(d);
  }

  get subscribers(): number {
    return this.#listeners.size;
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    if (this.#started) await this.source.stop();
  }
}
