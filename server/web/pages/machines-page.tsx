import type { MachineSummary } from "../../../bmdb/index.js";
import { withParams, type ListQuery } from "../list-query.js";
import { Age, Flag, machineHref, StateBadge } from "./parts.js";

export interface MachinesModel {
  now: Date;
  query: ListQuery;
  params: URLSearchParams;
  machines: MachineSummary[];
  nextAfter: string | undefined;
}

function Select(props: { name: string; label: string; value: string; options: [string, string][] }) {
  return (
    <label>
      {props.label}{" "}
      <select name={props.name}>
        {props.options.map(([v, text]) => (
          <option value={v} selected={v === props.value}>
            {text}
          </option>
        ))}
      </select>
    </label>
  );
}

const ANY: [string, string] = ["", "any"];
const YES_NO: [string, string][] = [ANY, ["yes", "yes"], ["no", "no"]];

/** A column header the page script can sort by (within the page shown: the order across pages is the machine ID's). */
function Th(props: { sort: string; children: string; num?: boolean }) {
  return (
    <th data-sort={props.sort} class={props.num ? "num" : undefined} aria-sort="none">
      <button type="button">{props.children}</button>
    </th>
  );
}

export function MachinesPage({ m }: { m: MachinesModel }) {
  const p = m.params;
  const get = (k: string) => p.get(k) ?? "";
  return (
    <>
      <h1>Machines</h1>
      <form class="filters" method="get" action="/machines">
        <Select name="heartbeat" label="heartbeat" value={get("heartbeat")} options={[ANY, ["fresh", "fresh"], ["stale", "stale"], ["never", "never"]]} />
        <Select name="recovery" label="needs recovery" value={get("recovery")} options={YES_NO} />
        <Select name="hw" label="hardware report" value={get("hw")} options={YES_NO} />
        <Select name="pending" label="pending installation" value={get("pending")} options={YES_NO} />
        <label>
          provider <input name="provider" value={get("provider")} size={10} />
        </label>
        <label>
          search <input name="q" value={get("q")} size={18} placeholder="ID / provider ID / key prefix" />
        </label>
        <Select name="size" label="per page" value={String(m.query.pageSize)} options={["20", "50", "100", "500"].map((s) => [s, s])} />
        <button type="submit">Apply</button> <a href="/machines">clear</a>
      </form>
      <div id="live-region">
      <p class="summary">
        {m.machines.length === 0 ? "No machines match." : `${m.machines.length} machine${m.machines.length === 1 ? "" : "s"} on this page`}
        {m.query.after && (
          <>
            {" "}
            after <code>{m.query.after}</code>
          </>
        )}
      </p>
      {m.machines.length > 0 && (
        <table class="data machines" id="machines">
          <thead>
            <tr>
              <Th sort="id">machine</Th>
              <Th sort="provider">provider</Th>
              <Th sort="location">location</Th>
              <Th sort="heartbeat">last heartbeat</Th>
              <Th sort="state">state</Th>
              <Th sort="recovery">recovery</Th>
              <Th sort="hw">hardware</Th>
              <Th sort="install">installation</Th>
            </tr>
          </thead>
          <tbody>
            {m.machines.map((x) => (
              <tr data-machine={x.machineId}>
                <td data-v={x.machineId}>
                  <a href={machineHref(x.machineId)}>
                    <code>{x.machineId}</code>
                  </a>
                </td>
                <td data-v={x.provider ? `${x.provider}/${x.providerId}` : ""}>{x.provider ? `${x.provider} / ${x.providerId}` : <span class="muted">–</span>}</td>
                <td data-v={x.location ?? ""}>{x.location ?? <span class="muted">–</span>}</td>
                <td data-v={x.lastHeartbeatAt ? String(-x.lastHeartbeatAt.getTime()) : "~"}>{x.lastHeartbeatAt ? <Age at={x.lastHeartbeatAt} now={m.now} /> : <span class="muted">never</span>}</td>
                <td data-v={x.heartbeat}>
                  <StateBadge state={x.heartbeat} />
                </td>
                <td data-v={x.needsRecovery ? "0" : "1"}>
                  <Flag on={x.needsRecovery} yes="needs recovery" cls="stale" />
                </td>
                <td data-v={x.hasHardwareReport ? "0" : "1"}>
                  <Flag on={x.hasHardwareReport} yes="yes" no="no" />
                </td>
                <td data-v={x.installationPending ? "0" : "1"}>
                  <Flag on={x.installationPending} yes="pending" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav class="pager">
        {m.query.after && <a href={`/machines${withParams(p, { after: undefined })}`}>« first page</a>}
        {m.nextAfter && (
          <a href={`/machines${withParams(p, { after: m.nextAfter })}`} rel="next" id="next-page">
            next page »
          </a>
        )}
      </nav>
      </div>
    </>
  );
}
