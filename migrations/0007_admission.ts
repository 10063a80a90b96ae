import { sql, type Kysely } from "kysely";
import * as m0004 from "./0004_heartbeat_batch_function.js";

// Admission of agent keys (issue 9). A (machine, key) pair is in one of four
// states:
//   preauthorized, accepted — the machine's current key, in machine_agent_started
//     (admission says which; admitted_by who or what decided);
//   pending, rejected       — any other key that asked, in machine_agent_request.
// Pending rows are written only by refused heartbeats (bmaas_record_refused
// below), for machines that exist, within per-machine and total bounds;
// rejected rows by operators (and for keys an accepted key replaced), and a
// rejected key writes nothing more.
//
// bmaas_heartbeat_batch (migration 0004) gets a refused-rows tail: after the
// unchanged authenticate-and-upsert query, if fewer rows authenticated than
// came in, it calls bmaas_record_refused in the same statement. A batch in
// which every heartbeat authenticated pays one row-count comparison.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("machine_agent_started")
    .addColumn("admission", "text", (c) => c.notNull().defaultTo("preauthorized").check(sql`admission in ('preauthorized', 'accepted')`))
    .execute();
  await db.schema.alterTable("machine_agent_started").addColumn("admitted_by", "text").execute();

  await db.schema
    .createTable("machine_agent_request")
    .addColumn("machine_id", "uuid", (c) => c.notNull().references("machines.machine_id").onDelete("cascade"))
    .addColumn("agent_public_key", "bytea", (c) => c.notNull())
    .addColumn("key_fingerprint", "text", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull().check(sql`state in ('pending', 'rejected')`))
    .addColumn("first_seen_at", "timestamptz", (c) => c.notNull())
    .addColumn("last_seen_at", "timestamptz", (c) => c.notNull())
    .addColumn("attempts", "bigint", (c) => c.notNull().defaultTo(1))
    .addColumn("hardware_report_raw", "bytea")
    .addColumn("hardware_report_json", "jsonb")
    .addColumn("decided_at", "timestamptz")
    .addColumn("decided_by", "text")
    .addColumn("reason", "text")
    .addPrimaryKeyConstraint("machine_agent_request_pk", ["machine_id", "agent_public_key"])
    .execute();
  // The total bound counts pending rows (an index-only scan); lists page by (state, machine, fingerprint).
  await db.schema.createIndex("machine_agent_request_state").on("machine_agent_request").columns(["state", "machine_id", "key_fingerprint"]).execute();

  // Records refused heartbeats. Input: the whole batch (rows whose key is the
  // machine's current key were authenticated, or registered meanwhile, and are
  // skipped). Per refused row, one status:
  //   unknown_machine — nothing written (the caller counts it);
  //   rejected        — nothing written;
  //   pending         — an existing request refreshed (last seen, attempts, report);
  //   pending_new     — a new request, with a history row and its NOTIFY;
  //   machine_full / total_full — past a bound: nothing written.
  // Rows are visited in (machine, key) order so concurrent batches lock in one order.
  await sql`
    create or replace function bmaas_record_refused(
      p_machine_ids text[], p_keys text[], p_reports text[], p_report_jsons text[], p_event_ids text[],
      p_now timestamptz, p_now_text text, p_channel text, p_max_per_machine int, p_max_total int)
    returns table (out_ord bigint, out_status text)
    language plpgsql as $fn$
    declare
      r record;
      v_state text;
      v_total bigint;
      v_fp text;
      v_current bytea;
      v_details jsonb;
    begin
      for r in
        select t.machine_id::uuid as machine_id, decode(t.public_key, 'hex') as public_key, decode(t.report, 'hex') as report, t.report_json::jsonb as report_json,
               t.event_id::uuid as event_id, t.ord
        from unnest(p_machine_ids, p_keys, p_reports, p_report_jsons, p_event_ids) with ordinality as t(machine_id, public_key, report, report_json, event_id, ord)
        order by 1, 2
      loop
        -- The machine's row lock serialises recorders of one machine, so its bound is exact.
        if not exists (select 1 from machines m where m.machine_id = r.machine_id for no key update) then
          out_ord := r.ord; out_status := 'unknown_machine'; return next; continue;
        end if;
        select s.agent_public_key into v_current from machine_agent_started s where s.machine_id = r.machine_id;
        if v_current = r.public_key then continue; end if;
        select q.state into v_state from machine_agent_request q where q.machine_id = r.machine_id and q.agent_public_key = r.public_key;
        if v_state = 'rejected' then
          out_status := 'rejected';
        elsif v_state = 'pending' then
          update machine_agent_request q set last_seen_at = p_now, attempts = q.attempts + 1,
            hardware_report_raw = coalesce(r.report, q.hardware_report_raw), hardware_report_json = coalesce(r.report_json, q.hardware_report_json)
          where q.machine_id = r.machine_id and q.agent_public_key = r.public_key;
          out_status := 'pending';
        elsif (select count(*) from machine_agent_request q where q.machine_id = r.machine_id and q.state = 'pending') >= p_max_per_machine then
          out_status := 'machine_full';
        else
          if v_total is null then select count(*) into v_total from machine_agent_request q where q.state = 'pending'; end if;
          if v_total >= p_max_total then
            out_status := 'total_full';
          else
            v_fp := encode(sha256(r.public_key), 'hex');
            insert into machine_agent_request as q (machine_id, agent_public_key, key_fingerprint, state, first_seen_at, last_seen_at, attempts, hardware_report_raw, hardware_report_json)
            values (r.machine_id, r.public_key, v_fp, 'pending', p_now, p_now, 1, r.report, r.report_json)
            on conflict (machine_id, agent_public_key) do update set last_seen_at = p_now, attempts = q.attempts + 1;
            v_total := v_total + 1;
            v_details := jsonb_build_object('keyFingerprint', v_fp)
              || case when v_current is null then '{}'::jsonb else jsonb_build_object('currentKeyFingerprint', encode(sha256(v_current), 'hex')) end;
            insert into machine_history (event_id, machine_id, occurred_at, event, details)
            values (r.event_id, r.machine_id, p_now, 'agent_pending', v_details);
            perform pg_notify(p_channel, json_build_object('eventId', r.event_id, 'machineId', r.machine_id, 'occurredAt', p_now_text,
              'event', 'agent_pending', 'details', v_details)::text);
            out_status := 'pending_new';
          end if;
        end if;
        out_ord := r.ord;
        return next;
      end loop;
    end
    $fn$
  `.execute(db);

  // 0004's function with the refused-rows tail and a status column (a new
  // return type, hence drop and create). The query itself is unchanged.
  await sql`drop function if exists bmaas_heartbeat_batch(text[], text[], text[], timestamptz, timestamptz, text, text)`.execute(db);
  await createHeartbeatBatchFunction(db);
}

/** This migration's bmaas_heartbeat_batch (0008's down restores it). */
export async function createHeartbeatBatchFunction(db: Kysely<unknown>): Promise<void> {
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
      auth as (
        select i.machine_id, i.event_id, i.ord from input i
        join machine_agent_started s on s.machine_id = i.machine_id and s.agent_public_key = i.public_key
      ),
      beat as (
        insert into machine_agent_heartbeat as h (machine_id, agent_heartbeat_at, previous_heartbeat_at)
        select a.machine_id, p_now, null from auth a
        on conflict (machine_id) do update set
          previous_heartbeat_at = h.agent_heartbeat_at,
          previous_stale = h.stale,
          agent_heartbeat_at = excluded.agent_heartbeat_at,
          stale = false
        returning h.machine_id, h.previous_heartbeat_at, h.previous_stale
      ),
      history as (
        insert into machine_history as mh (event_id, machine_id, occurred_at, event, details)
        select a.event_id, b.machine_id, p_now,
          case when b.previous_heartbeat_at is null then 'first_heartbeat' else 'heartbeat_resumed' end,
          case when b.previous_heartbeat_at is null then '{}'::jsonb
            else jsonb_build_object('silentForMs', floor(extract(epoch from (p_now - b.previous_heartbeat_at)) * 1000)::bigint) end
        from beat b join auth a on a.machine_id = b.machine_id
        where b.previous_heartbeat_at is null or b.previous_stale or b.previous_heartbeat_at <= p_stale_before
        returning mh.event_id, mh.machine_id, mh.event, mh.details
      ),
      announced as (
        select count(pg_notify(p_channel, json_build_object(
          'eventId', x.event_id, 'machineId', x.machine_id, 'occurredAt', p_now_text, 'event', x.event, 'details', x.details)::text)) as n
        from history x
      )
      select a.ord, 'ok'::text, rq.generation, rq.installation_request_raw, rp.generation
      from auth a
      cross join announced
      left join machine_installation_request rq on rq.machine_id = a.machine_id
      left join machine_installation_report rp on rp.machine_id = a.machine_id;
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
  await sql`drop function if exists bmaas_heartbeat_batch(text[], text[], text[], timestamptz, timestamptz, text, text, int, int)`.execute(db);
  await sql`drop function if exists bmaas_record_refused(text[], text[], text[], text[], text[], timestamptz, text, text, int, int)`.execute(db);
  await db.schema.dropTable("machine_agent_request").execute();
  await db.schema.alterTable("machine_agent_started").dropColumn("admitted_by").execute();
  await db.schema.alterTable("machine_agent_started").dropColumn("admission").execute();
  await m0004.up(db);
}
