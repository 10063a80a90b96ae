import type { HistoryPage } from "../../../bmdb/index.js";
import type { MachineLine } from "../../../lib/display.js";
import { Age } from "./parts.js";

export interface MachineModel {
  now: Date;
  machineId: string;
  /** The machine's tags as bmctl shows them; null once the machine was deleted (its history remains). */
  lines: MachineLine[] | null;
  history: HistoryPage;
  /** Set when this is not the newest page of history. */
  olderThan: boolean;
  nextHistoryHref: string | undefined;
}

export function MachinePage({ m }: { m: MachineModel }) {
  return (
    <>
      <h1>
        Machine <code>{m.machineId}</code>
      </h1>
      {m.lines === null ? (
        <p class="notice-inline">This machine was deleted; its history remains.</p>
      ) : (
        <table class="tags" id="tags">
          <tbody>
            {m.lines.map(([label, parts]) => (
              <tr class={label.startsWith("  ") ? "sub" : undefined} data-tag={label.trim()}>
                <th>{label.trim()}</th>
                <td>{parts.map((part) => (typeof part === "string" ? part : <Age at={part.at} now={m.now} />))}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>History</h2>
      {m.history.events.length === 0 ? (
        <p class="muted">No events{m.olderThan ? " older than these" : ""}.</p>
      ) : (
        <table class="data history" id="history">
          <thead>
            <tr>
              <th>when</th>
              <th>event</th>
              <th>details</th>
            </tr>
          </thead>
          <tbody>
            {m.history.events.map((e) => (
              <tr>
                <td>
                  <Age at={e.occurredAt} now={m.now} /> <span class="muted">{e.occurredAt.toISOString()}</span>
                </td>
                <td>{e.event.replace(/_/g, " ")}</td>
                <td>
                  <code class="details">{Object.keys(e.details).length ? JSON.stringify(e.details) : ""}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav class="pager">
        {m.olderThan && <a href={`/machines/${m.machineId}`}>« newest</a>}
        {m.nextHistoryHref && (
          <a href={m.nextHistoryHref} rel="next" id="older-history">
            older »
          </a>
        )}
      </nav>
    </>
  );
}
