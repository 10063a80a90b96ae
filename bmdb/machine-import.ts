import { sql } from "kysely";
import { v4 as uuidv4 } from "uuid";
import { EVENTS_CHANNEL, encodeEvent, type MachineEvent } from "./events.js";
import { keyFingerprint } from "../lib/fingerprint.js";
import { newEventId } from "./private/event-id.js";
import type { TxContext } from "./private/tx-context.js";
import { hex } from "./private/hex.js";

// Bulk onboarding: create machines and preauthorize their agents' keys, a
// batch of entries per transaction, set-based (a handful of statements per
// batch whatever its size), so that 100,000 machines take seconds.
//
// Idempotency: a machine is identified by (provider, provider_id), which
// machine_provided has kept unique since migration 0001. An entry whose
// machine exists changes nothing, except that a key is set on a machine that
// has none; a key different from the machine's current one is a conflict,
// reported and not written (replacing a key is `bmctl agent register`'s job,
// on purpose, one machine at a time).

export interface ImportEntry {
  provider: string;
  providerId: string;
  publicKey?: Uint8Array | undefined;
}

export type ImportOutcome = "created" | "key_set" | "unchanged" | "key_conflict";

export interface ImportResult {
  outcome: ImportOutcome;
  machineId: string;
}


/** Imports entries (distinct (provider, providerId) pairs); results in input order. */
export async function importMachines({ trx, now, notify }: TxContext, entries: readonly ImportEntry[], by: string): Promise<ImportResult[]> {
  if (entries.length === 0) return [];
  const { rows: existing } = await sql<{ ord: string | number | bigint; machine_id: string; agent_public_key: Uint8Array | null }>`
    select i.ord, p.machine_id, s.agent_public_key
    from unnest(${entries.map((e) => e.provider)}::text[], ${entries.map((e) => e.providerId)}::text[]) with ordinality as i(provider, provider_id, ord)
    join machine_provided p on p.provider = i.provider and p.provider_id = i.provider_id
    left join machine_agent_started s on s.machine_id = p.machine_id
  `.execute(trx);

  const results: (ImportResult | undefined)[] = entries.map(() => undefined);
  const keySet: { machineId: string; key: Uint8Array }[] = [];
  for (const r of existing) {
    const i = Number(r.ord) - 1;
    const e = entries[i]!;
    let outcome: ImportOutcome = "unchanged";
    if (e.publicKey && !r.agent_public_key) {
      outcome = "key_set";
      keySet.push({ machineId: r.machine_id, key: e.publicKey });
    } else if (e.publicKey && r.agent_public_key && !Buffer.from(r.agent_public_key).equals(Buffer.from(e.publicKey))) {
      outcome = "key_conflict";
    }
    results[i] = { outcome, machineId: r.machine_id };
  }
  const created: { machineId: string; entry: ImportEntry }[] = [];
  entries.forEach((entry, i) => {
    if (results[i]) return;
    const machineId = uuidv4();
    results[i] = { outcome: "created", machineId };
    created.push({ machineId, entry });
  });

  if (created.length > 0) {
    const ids = created.map((c) => c.machineId);
    await sql`insert into machines (machine_id, created_at) select m, ${now}::timestamptz from unnest(${ids}::uuid[]) as t(m)`.execute(trx);
    await sql`
      insert into machine_provided (machine_id, provider, provider_id)
      select * from unnest(${ids}::uuid[], ${created.map((c) => c.entry.provider)}::text[], ${created.map((c) => c.entry.providerId)}::text[])
    `.execute(trx);
  }
  const keyed = [...created.filter((c) => c.entry.publicKey).map((c) => ({ machineId: c.machineId, key: c.entry.publicKey! })), ...keySet];
  if (keyed.length > 0) {
    await sql`
      insert into machine_agent_started (machine_id, agent_started_at, agent_public_key, admission, admitted_by)
      select m, ${now}::timestamptz, decode(k, 'hex'), 'preauthorized', ${by}::text
      from unnest(${keyed.map((k) => k.machineId)}::uuid[], ${keyed.map((k) => hex(k.key))}::text[]) as t(m, k)
    `.execute(trx);
    // A key that was pending or rejected for that machine is now its key.
    await sql`
      delete from machine_agent_request r using unnest(${keyed.map((k) => k.machineId)}::uuid[], ${keyed.map((k) => hex(k.key))}::text[]) as t(m, k)
      where r.machine_id = t.m and r.agent_public_key = decode(t.k, 'hex')
    `.execute(trx);
  }

  // One history row per machine written: imported (with its key), or its key set.
  const events: MachineEvent[] = [
    ...created.map((c): MachineEvent => ({
      eventId: newEventId(now),
      machineId: c.machineId,
      occurredAt: now,
      event: "machine_imported",
      details: {
        provider: c.entry.provider,
        providerId: c.entry.providerId,
        by,
        ...(c.entry.publicKey && { keyFingerprint: keyFingerprint(c.entry.publicKey), admission: "preauthorized" }),
      },
    })),
    ...keySet.map((k): MachineEvent => ({
      eventId: newEventId(now),
      machineId: k.machineId,
      occurredAt: now,
      event: "agent_registered",
      details: { keyFingerprint: keyFingerprint(k.key), admission: "preauthorized", by },
    })),
  ];
  if (events.length > 0) {
    await sql`
      insert into machine_history (event_id, machine_id, occurred_at, event, details)
      select e, m, ${now}::timestamptz, k, d::jsonb
      from unnest(${events.map((e) => e.eventId)}::uuid[], ${events.map((e) => e.machineId)}::uuid[], ${events.map((e) => e.event)}::text[],
        ${events.map((e) => JSON.stringify(e.details))}::text[]) as t(e, m, k, d)
    `.execute(trx);
    if (notify) {
      await sql`select count(pg_notify(${EVENTS_CHANNEL}, p)) from unnest(${events.map(encodeEvent)}::text[]) as t(p)`.execute(trx);
    }
  }
  return results.map((r) => r!);
}
