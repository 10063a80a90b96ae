import type { HeartbeatState } from "../../../bmdb/index.js";
import { humanAge } from "../../../lib/display.js";

// Small pieces shared by the pages.

/** A point in time shown as its age ("12s ago"); the page script keeps it current. */
export function Age(props: { at: Date; now: Date; id?: string; revalidating?: boolean }) {
  const iso = props.at.toISOString();
  return (
    <time class="age" dateTime={iso} title={iso} id={props.id} data-revalidating={props.revalidating ? "1" : undefined}>
      {humanAge(props.now.getTime() - props.at.getTime())}
    </time>
  );
}

export function StateBadge(props: { state: HeartbeatState }) {
  return <span class={`badge ${props.state}`}>{props.state}</span>;
}

export function Flag(props: { on: boolean; yes: string; no?: string; cls?: string }) {
  return props.on ? <span class={`badge ${props.cls ?? "on"}`}>{props.yes}</span> : <span class="muted">{props.no ?? "–"}</span>;
}

export function machineHref(id: string): string {
  return `/machines/${encodeURIComponent(id)}`;
}
