import { timestampDate } from "@bufbuild/protobuf/wkt";
import { humanAge, humanBytes, machineLines } from "../../lib/display.js";
import type { FleetStatsResponse, Machine, MachineEvent, MachineSummary } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { heartbeatStateName } from "../../lib/heartbeat-states.js";
import { admissionStatsLine } from "./admission-format.js";

export { humanAge, humanBytes } from "../../lib/display.js";

/** A machine as aligned "label  value" lines for people (the lines the web view shows too). */
export function formatMachine(m: Machine, now = Date.now()): string {
  const rows = machineLines(m).map(([k, parts]) => [k, parts.map((p) => (typeof p === "string" ? p : `${p.at.toISOString()} (${humanAge(now - p.at.getTime())})`)).join("")] as const);
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
  const withAdmission = `${counters}\n\n${admissionStatsLine(s)}`;
  if (s.hardware.length === 0) return withAdmission + "\n\nno hardware reports yet";
  const hw = table(
    ["PROVIDER", "LOCATION", "NODES", "CPU THREADS", "MEMORY"],
    s.hardware.map((h) => [h.provider || "-", h.location || "-", String(h.nodes), String(h.cpuThreads), humanBytes(h.memoryBytes)]),
  );
  return `${withAdmission}\n\n${hw}`;
}
