import { sql, type Kysely } from "kysely";
import { createHeartbeatBatchFunction } from "./0007_admission.js";

// The heartbeat moves into the agent's own row (issue 8: 1,000,000 machines).
// A heartbeat used to cost two primary-key lookups: machine_agent_started to
// authenticate, machine_agent_heartbeat to upsert. With a million machines
// each B-tree is a level deeper and its leaves no longer stay in the CPU's
// caches, so both lookups grew; and an agent's first heartbeat inserted into
// the second index at a random leaf. Now one UPDATE finds the row by machine_id,
// checks the key in the same row, and writes the heartbeat there: one lookup,
// and (with the free space fillfactor leaves) a HOT update that writes no index
// entry — none of the row's indexed columns (machine_id, the key's fingerprint)
// changes. The group-commit statement alone, batches of 64 (npm run
// bench:batch): 1.7–2.0 against 1.9–2.4 ms with 10,000 machines, 1.7–2.1
// against 2.5 ms with 1,000,000.
//
// What stays: revoking the agent deletes the row, heartbeat included (the
// cascade did that before); replacing its key updates the row and keeps the
// heartbeat (the heartbeat row survived that before). The tag model keeps one
// row per machine per tag; the agent's heartbeat is now part of its agent tag.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table machine_agent_started
    add column agent_heartbeat_at timestamptz,
    add column stale boolean not null default false,
    add column previous_heartbeat_at timestamptz,
    add column previous_stale boolean not null default false`.execute(db);
  // New pages keep 30% free for HOT updates; existing rows move once, on their first heartbeat.
  await sql`alter table machine_agent_started set (fillfactor = 70)`.execute(db);
  await sql`update machine_agent_started s
    set agent_heartbeat_at = h.agent_heartbeat_at, stale = h.stale, previous_heartbeat_at = h.previous_heartbeat_at, previous_stale = h.previous_stale
    from machine_agent_heartbeat h where h.machine_id = s.machine_id`.execute(db);
  await db.schema.dropTable("machine_agent_heartbeat").execute();

  // 0007's function (same arguments and result), its authenticate-and-upsert
  // now one UPDATE of the agent's row. At READ COMMITTED an UPDATE re-checks a
  // row another transaction changed meanwhile: a heartbeat racing a key
  // replacement or a revocation is refused (and recorded as refused) or
  // counted before it, never written under the old key.
  await sql`
    create or replace function bmaas_heartbeat_batch(
      p_machine_ids text[], p_keys text[], p_event_ids text[],
      p_now timestamptz, p_stale_before timestamptz, p_now_text text, p_channel text,
      p_max_per_machine int, p_max_total int)
    returns table (out_ord bigint, out_status text, out_request_generation bigint, out_request_raw bytea, out_report_generation bigint)
    language plpgsql as $fn$
    declare
      v_n bigint;
    begin
      return query
      with input as (
        select t.machine_id::uuid as machine_id, decode(t.public_key, 'hex') as public_key, t.event_id::uuid as event_id, t.ord
        from unnest(p_machine_ids, p_keys, p_event_ids) with ordinality as t(machine_id, public_key, event_id, ord)
      ),
      beat as (
        update machine_agent_started s set
          previous_heartbeat_at = s.agent_heartbeat_at,
          previous_stale = s.stale,
          agent_heartbeat_at = p_now,
          stale = false
        from input i
        where s.machine_id = i.machine_id and s.agent_public_key = i.public_key
        returning s.machine_id, s.previous_heartbeat_at, s.previous_stale, i.event_id, i.ord
      ),
      history as (
        insert into machine_history as mh (event_id, machine_id, occurred_at, event, details)
        select b.event_id, b.machine_id, p_now,
          case when b.previous_heartbeat_at is null then 'first_heartbeat' else 'heartbeat_resumed' end,
          case when b.previous_heartbeat_at is null then '{}'::jsonb
            else jsonb_build_object('silentForMs', floor(extract(epoch from (p_now - b.previous_heartbeat_at)) * 1000)::bigint) end
        from beat b
        where b.previous_heartbeat_at is null or b.previous_stale or b.previous_heartbeat_at <= p_stale_before
        returning mh.event_id, mh.machine_id, mh.event, mh.details
      ),
      announced as (
        select count(pg_notify(p_channel, json_build_object(
          'eventId', x.event_id, 'machineId', x.machine_id, 'occurredAt', p_now_text, 'event', x.event, 'details', x.details)::text)) as n
        from history x
      )
      select b.ord, 'ok'::text, rq.generation, rq.installation_request_raw, rp.generation
      from beat b
      cross join announced
      left join machine_installation_request rq on rq.machine_id = b.machine_id
      left join machine_installation_report rp on rp.machine_id = b.machine_id;
      get diagnostics v_n = row_count;
      -- The common case ends here: every heartbeat authenticated.
      if v_n < cardinality(p_machine_ids) then
        return query
        select f.out_ord, f.out_status, null::bigint, null::bytea, null::bigint
        from bmaas_record_refused(p_machine_ids, p_keys, array_fill(null::text, array[cardinality(p_machine_ids)]),
          array_fill(null::text, array[cardinality(p_machine_ids)]), p_event_ids, p_now, p_now_text, p_channel, p_max_per_machine, p_max_total) f;
      end if;
    end
    $fn$
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("machine_agent_heartbeat")
    .addColumn("machine_id", "uuid", (c) => c.primaryKey().references("machine_agent_started.machine_id").onDelete("cascade"))
    .addColumn("agent_heartbeat_at", "timestamptz", (c) => c.notNull())
    .addColumn("stale", "boolean", (c) => c.notNull().defaultTo(sql`false`))
    .addColumn("previous_heartbeat_at", "timestamptz")
    .addColumn("previous_stale", "boolean", (c) => c.notNull().defaultTo(sql`false`))
    .execute();
  await sql`alter table machine_agent_heartbeat set (fillfactor = 70)`.execute(db);
  await sql`insert into machine_agent_heartbeat (machine_id, agent_heartbeat_at, stale, previous_heartbeat_at, previous_stale)
    select machine_id, agent_heartbeat_at, stale, previous_heartbeat_at, previous_stale from machine_agent_started where agent_heartbeat_at is not null`.execute(db);
  await sql`alter table machine_agent_started drop column agent_heartbeat_at, drop column stale, drop column previous_heartbeat_at, drop column previous_stale`.execute(db);
  await sql`alter table machine_agent_started reset (fillfactor)`.execute(db);
  await createHeartbeatBatchFunction(db);
}
