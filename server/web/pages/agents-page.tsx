import type { AgentRequestView } from "../../../bmdb/index.js";
import { withParams } from "../list-query.js";
import { Age, machineHref } from "./parts.js";

// Agents waiting for admission (and rejected keys), with what an operator
// needs to decide: which machine, whether it already has a key (a re-keyed
// agent), whether the new agent's hardware matches the machine's last accepted
// report, how often and since when it asked. Decisions stay in bmctl; the page
// shows the command.

export interface AgentsModel {
  now: Date;
  params: URLSearchParams;
  state: "pending" | "rejected";
  requests: AgentRequestView[];
  /** The cursor of the next page ("machine_fingerprint"), if there is one. */
  next: string | undefined;
  after: string | undefined;
}

const MATCH_TEXT: Record<AgentRequestView["hardwareMatch"], [string, string]> = {
  identical: ["identical", "fresh"],
  same_identity: ["same machine (serials match)", "fresh"],
  different: ["DIFFERENT hardware", "stale"],
  no_report: ["no report sent", "never"],
  no_accepted_report: ["nothing accepted to compare", "never"],
};

function Match(props: { match: AgentRequestView["hardwareMatch"] }) {
  const [text, cls] = MATCH_TEXT[props.match];
  return <span class={`badge ${cls}`}>{text}</span>;
}

function Filters(props: { params: URLSearchParams }) {
  const get = (k: string) => props.params.get(k) ?? "";
  return (
    <form class="filters" method="get" action="/agents">
      <label>
        state{" "}
        <select name="state">
          <option value="" selected={get("state") === ""}>
            pending
          </option>
          <option value="rejected" selected={get("state") === "rejected"}>
            rejected
          </option>
        </select>
      </label>
      <label>
        machine has a key{" "}
        <select name="rekeyed">
          <option value="" selected={get("rekeyed") === ""}>
            any
          </option>
          <option value="yes" selected={get("rekeyed") === "yes"}>
            yes (re-keyed)
          </option>
          <option value="no" selected={get("rekeyed") === "no"}>
            no (first key)
          </option>
        </select>
      </label>
      <label>
        provider <input name="provider" value={get("provider")} size={10} />
      </label>
      <button type="submit">Apply</button> <a href="/agents">clear</a>
    </form>
  );
}

export function AgentsPage({ m }: { m: AgentsModel }) {
  return (
    <>
      <h1>{m.state === "pending" ? "Agents waiting for admission" : "Rejected agent keys"}</h1>
      <Filters params={m.params} />
      <div id="live-region">
        <p class="summary">
          {m.requests.length === 0 ? `No ${m.state} keys match.` : `${m.requests.length} key${m.requests.length === 1 ? "" : "s"} on this page`}
          {m.state === "pending" && m.requests.length > 0 && (
            <>
              {" "}
              — decide with <code>bmctl agent accept MACHINE FINGERPRINT</code> or <code>bmctl agent reject MACHINE FINGERPRINT</code>
            </>
          )}
        </p>
        {m.requests.length > 0 && (
          <table class="data agents" id="agents">
            <thead>
              <tr>
                <th>machine</th>
                <th>provider</th>
                <th>key asking</th>
                <th>machine's current key</th>
                <th>hardware</th>
                <th class="num">attempts</th>
                <th>first seen</th>
                <th>last seen</th>
                {m.state === "rejected" && <th>decided</th>}
              </tr>
            </thead>
            <tbody>
              {m.requests.map((r) => (
                <tr data-machine={r.machineId} data-key={r.keyFingerprint}>
                  <td>
                    <a href={machineHref(r.machineId)}>
                      <code>{r.machineId}</code>
                    </a>
                  </td>
                  <td>{r.provider ? `${r.provider} / ${r.providerId}` : <span class="muted">–</span>}</td>
                  <td>
                    <code title={r.keyFingerprint}>{r.keyFingerprint.slice(0, 16)}</code>
                  </td>
                  <td>{r.currentKeyFingerprint ? <code title={r.currentKeyFingerprint}>{r.currentKeyFingerprint.slice(0, 16)}</code> : <span class="muted">none (first key)</span>}</td>
                  <td>
                    <Match match={r.hardwareMatch} />
                  </td>
                  <td class="num">{r.attempts.toString()}</td>
                  <td>
                    <Age at={r.firstSeenAt} now={m.now} />
                  </td>
                  <td>
                    <Age at={r.lastSeenAt} now={m.now} />
                  </td>
                  {m.state === "rejected" && (
                    <td>
                      {r.decidedBy ?? "–"}
                      {r.reason ? ` (${r.reason})` : ""}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <nav class="pager">
          {m.after && <a href={`/agents${withParams(m.params, { after: undefined })}`}>« first page</a>}
          {m.next && (
            <a href={`/agents${withParams(m.params, { after: m.next })}`} rel="next" id="next-page">
              next page »
            </a>
          )}
        </nav>
      </div>
    </>
  );
}
