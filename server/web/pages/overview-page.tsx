import { humanBytes } from "../../../lib/display.js";
import type { OverviewModel } from "../overview-data.js";
import { Columns, formatNumber, StackedBars } from "./charts.js";
import { Age } from "./parts.js";

function Counter(props: { label: string; value: number; href?: string }) {
  const body = (
    <>
      <span class="value">{formatNumber(props.value)}</span>
      <span class="name">{props.label}</span>
    </>
  );
  return <li class="counter">{props.href ? <a href={props.href}>{body}</a> : body}</li>;
}

/** "1 min", "10 min", "1 h", "1 d". */
function span(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

function ageLabels(bounds: number[]): string[] {
  return [...bounds.map((b, i) => (i === 0 ? `< ${span(b)}` : `${span(bounds[i - 1]!)}–${span(b)}`)), `> ${span(bounds.at(-1)!)}`];
}

export function OverviewPage({ m }: { m: OverviewModel }) {
  const c = m.stats.counters;
  const groupLabel = (p: string, l: string) => (p ? `${p}${l ? ` / ${l}` : ""}` : "no provider");
  const labels = ageLabels(m.bounds);
  const slotSeconds = m.traffic.slotMs / 1000;
  const closed = m.traffic.closed;
  return (
    <>
      <h1>Fleet overview</h1>
      <p class="asof">
        Fleet figures as of <Age at={m.asOf} now={m.now} id="figures-as-of" revalidating={m.revalidating} /> (one shared reading, renewed every few seconds while someone looks; older figures are shown at once while a new reading runs).
      </p>
      <ul class="counters">
        <Counter label="machines" value={c.machines} href="/machines" />
        <Counter label="provided" value={c.provided} />
        <Counter label="heartbeating" value={c.heartbeating} href="/machines?heartbeat=fresh" />
        <Counter label="pending installation" value={c.pendingInstallation} href="/machines?pending=yes" />
        <Counter label="installed" value={c.installed} />
        <Counter label="pending agent start" value={c.pendingAgentStart} />
        <Counter label="pending recovery" value={c.pendingRecovery} href="/machines?recovery=yes" />
        <Counter label="agents pending admission" value={m.stats.admission.pending} href="/agents" />
        <Counter label="of them re-keyed" value={m.stats.admission.rekeyedPending} href="/agents?rekeyed=yes" />
      </ul>

      <section>
        <h2>Heartbeat health by provider and location</h2>
        {m.groups.length === 0 ? (
          <p class="muted">No machines yet.</p>
        ) : (
          <StackedBars
            title="machines by heartbeat state per provider and location"
            rows={m.groups.map((g) => ({
              label: groupLabel(g.provider, g.location),
              ...(g.provider && { href: `/machines?provider=${encodeURIComponent(g.provider)}` }),
              segments: [
                { value: g.fresh, cls: "fresh", name: "fresh" },
                { value: g.stale, cls: "stale", name: "stale" },
                { value: g.never, cls: "never", name: "never" },
              ],
            }))}
          />
        )}
      </section>

      <section class="two">
        <div>
          <h2>Machines by last heartbeat</h2>
          <Columns
            title="machines by age of their last heartbeat"
            unit="machines"
            firstCaption={labels[0]!}
            lastCaption="never"
            values={[
              ...m.ages.map((v, i) => ({ value: v, label: labels[i]!, cls: i <= m.freshIndex ? "fresh" : "stale" })),
              { value: m.never, label: "never", cls: "never" },
            ]}
          />
          <p class="legend">
            {labels.map((l, i) => `${l}: ${m.ages[i]}`).join(" · ")} · never: {m.never}
          </p>
        </div>
        <div>
          <h2>Heartbeat traffic</h2>
          <Columns
            title="heartbeats per second taken by this server"
            unit="/s"
            firstCaption={closed.length ? `${Math.round((closed.length * slotSeconds) / 60)} min ago` : "just started"}
            lastCaption="now"
            values={closed.map((s) => ({ value: s.heartbeats / slotSeconds, label: s.at.toISOString().slice(11, 19) }))}
          />
          <p class="legend">
            Heartbeats per second this server took, per {slotSeconds} s; {m.traffic.current} so far in the current {slotSeconds} s.
          </p>
        </div>
      </section>

      <section>
        <h2>Hardware by provider and location</h2>
        {m.stats.hardware.length === 0 ? (
          <p class="muted">No hardware reports yet.</p>
        ) : (
          <table class="data">
            <thead>
              <tr>
                <th>provider</th>
                <th>location</th>
                <th class="num">nodes</th>
                <th class="num">CPU threads</th>
                <th class="num">memory</th>
              </tr>
            </thead>
            <tbody>
              {m.stats.hardware.map((h) => (
                <tr>
                  <td>{h.provider || "–"}</td>
                  <td>{h.location || "–"}</td>
                  <td class="num">{formatNumber(h.nodes)}</td>
                  <td class="num">{formatNumber(h.cpuThreads)}</td>
                  <td class="num">{humanBytes(h.memoryBytes)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
