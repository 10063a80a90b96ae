import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { FleetStatsResponse, Machine, MachineEvent, MachineSummary } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { heartbeatStateName } from "../../lib/heartbeat-states.js";

/** "12s ago", "5m ago", "3h ago", "2d ago". */
export function humanAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function humanBytes(n: bigint | number): string {
  let v = Number(n);
  for (const unit of ["B", "KiB", "MiB", "GiB", "TiB"]) {
    if (v < 1024 || unit === "TiB") return `${Number.isInteger(v) ? v : v.toFixed(1)} ${unit}`;
    v /= 1024;
  }
  return `${v} B`;
}

function when(ts: Timestamp | undefined, now: number): string {
  if (!ts) return "-";
  const d = timestampDate(ts);
  return `${d.toISOString()} (${humanAge(now - d.getTime())})`;
}

/** A machine as aligned "label  value" lines for people. */
export function formatMachine(m: Machine, now = Date.now()): string {
  const rows: [string, string][] = [["machine", m.machineId], ["created", when(m.createdAt, now)]];
  const p = m.provided;
  if (p) {
    const extra = [p.status && `status ${p.status}`, p.address && `address ${p.address}`, p.location && `location ${p.location}`].filter(Boolean);
    rows.push(["provider", `${p.provider} / ${p.providerId}${extra.length ? ` (${extra.join(", ")})` : ""}`]);
  }
  rows.push(["agent key", m.agentStarted ? `sha256:${m.agentStarted.keyFingerprint} (registered ${when(m.agentStarted.startedAt, now)})` : "none registered"]);
  rows.push(["heartbeat", m.agentHeartbeat ? when(m.agentHeartbeat.lastHeartbeatAt, now) : "never"]);
  const hw = m.hardwareReport;
  if (hw?.report) {
    const r = hw.report;
    const threads = r.cpu.reduce((a, c) => a + c.hardwareThreads, 0);
    const cores = r.cpu.reduce((a, c) => a + c.cores, 0);
    rows.push(["hardware", `${[r.manufacturer, r.product].filter(Boolean).join(" ") || "unknown model"}${r.serialNumber ? `, serial ${r.serialNumber}` : ""} (reported ${when(hw.reportedAt, now)})`]);
    rows.push(["  cpu", `${r.cpu.length} package(s), ${cores} cores, ${threads} threads${r.cpu[0] ? ` — ${r.cpu[0].model}` : ""}`]);
    rows.push(["  memory", `${humanBytes(r.memoryInstalledBytes)} installed, usable ratio ${r.memoryUsableRatio.toFixed(3)}`]);
    for (const d of r.blockDevice) rows.push(["  disk", `${humanBytes(d.capacityBytes)} ${[d.vendor, d.deviceModel].filter(Boolean).join(" ")}${d.serialNumber ? ` serial ${d.serialNumber}` : ""}`]);
    for (const n of r.networkInterface) {
      const mac = Buffer.from(n.mac).toString("hex").replace(/(..)(?!$)/g, "$1:");
      rows.push(["  nic", `${mac} ${n.driver} link ${n.linkUp ? "up" : "down"}${n.currentSpeedBytes ? ` ${Number(n.currentSpeedBytes * 8n) / 1e9} Gbit/s` : ""}`]);
    }
    for (const w of hw.warnings) rows.push(["  warning", w]);
  } else {
    rows.push(["hardware", "no report"]);
  }
  const rq = m.installationRequest;
  if (rq) {
    const mp = rq.request?.type.case === "metropolis" ? rq.request.type.value : undefined;
    const img = mp?.osImage;
    const image = img ? `${img.host}/${img.repository}${img.tag ? `:${img.tag}` : ""}${img.digest ? `@${img.digest}` : ""}` : "-";
    rows.push(["install", `generation ${rq.generation} to ${mp?.rootDevice ?? "?"}, image ${image} (requested ${when(rq.requestedAt, now)})${m.installationPending ? " — pending" : ""}`]);
  }
  const rp = m.installationReport;
  if (rp) rows.push(["installed", `generation ${rp.generation}: ${rp.success ? "success" : `error: ${rp.error}`} (${when(rp.reportedAt, now)})`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
}

/** Aligned columns; the last column is not padded. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [line(head), ...rows.map(line)].join("\n");
}

export function machineRows(machines: MachineSummary[], now = Date.now()): string[][] {
  return machines.map((m) => [
    m.machineId,
    m.provider ? `${m.provider}/${m.providerId}` : "-",
    m.lastHeartbeatAt ? humanAge(now - timestampDate(m.lastHeartbeatAt).getTime()) : "never",
    heartbeatStateName(m.heartbeatState) ?? "?",
    m.needsRecovery ? "needs recovery" : "-",
    m.hasHardwareReport ? "yes" : "no",
    m.installationPending ? "pending" : "-",
  ]);
}

export const MACHINE_HEAD = ["MACHINE", "PROVIDER", "HEARTBEAT", "STATE", "RECOVERY", "HW", "INSTALL"];

/** One line per event: time, machine, kind, details. */
export function formatEvent(e: MachineEvent): string {
  const at = e.occurredAt ? timestampDate(e.occurredAt).toISOString() : "-";
  return `${at}  ${e.machineId}  ${e.kind}${e.detailsJson && e.detailsJson !== "{}" ? `  ${e.detailsJson}` : ""}`;
}

export function formatFleetStats(s: FleetStatsResponse): string {
  const counters = table(
    ["MACHINES", "PROVIDED", "HEARTBEATING", "PENDING INSTALL", "INSTALLED", "PENDING AGENT START", "PENDING RECOVERY"],
    [[s.machines, s.provided, s.heartbeating, s.pendingInstallation, s.installed, s.pendingAgentStart, s.pendingRecovery].map(String)],
  );
  if (s.hardware.length === 0) return counters + "\n\nno hardware reports yet";
  const hw = table(
    ["PROVIDER", "LOCATION", "NODES", "CPU THREADS", "MEMORY"],
    s.hardware.map((h) => [h.provider || "-", h.location || "-", String(h.nodes), String(h.cpuThreads), humanBytes(h.memoryBytes)]),
  );
  return `${counters}\n\n${hw}`;
}
