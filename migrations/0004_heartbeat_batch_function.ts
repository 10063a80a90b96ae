import { sql, type Kysely } from "kysely";

// The group-commit statement of bmdb/heartbeat-batch.ts as a PL/pgSQL
// function. The statement (five CTEs: authenticate, upsert, history, NOTIFY,
// pending requests) cost more to parse and plan than to run: ~1.5 ms per call
// on PostgreSQL whatever the batch size. PL/pgSQL prepares the query once per
// session and reuses the plan, so a call is one small parse. The body is the
// statement described in bmdb/heartbeat-batch.ts; a change to it is a new
// migration with `create or replace`.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function bmaas_heartbeat_batch(
      p_machine_ids text[], p_keys text[], p_event_ids text[],
      p_now timestamptz, p_stale_before timestamptz, p_now_text text, p_channel text)
    returns table (out_ord bigint, out_request_generation bigint, out_request_raw bytea, out_report_generation bigint)
    language plpgsql as $fn$
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
      select a.ord, rq.generation, rq.installation_request_raw, rp.generation
      from auth a
      cross join announced
      left join machine_installation_request rq on rq.machine_id = a.machine_id
      left join machine_installation_report rp on rp.machine_id = a.machine_id;
    end
    $fn$
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists bmaas_heartbeat_batch(text[], text[], text[], timestamptz, timestamptz, text, text)`.execute(db);
}
