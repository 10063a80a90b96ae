import { createHash } from "node:crypto";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Machine } from "../gen/bmaas/operator/v1/operator_pb.js";

// How a machine reads to people, shared by bmctl (aligned text) and the web
// view (HTML): the same decoding, wording and omissions in both places.

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

/** A piece of a line: text, or a point in time that each medium shows its own way (with its age). */
export type Part = string | { at: Date };
export type MachineLine = [label: string, parts: Part[]];

const at = (ts: Timestamp | undefined): Part => (ts ? { at: timestampDate(ts) } : "-");

/**
 * Installation node parameters may hold secrets (join tokens, keys): shown
 * only as their size and SHA-256, enough to tell two requests apart.
 */
export function nodeParametersSummary(p: Uint8Array): string {
  return p.length === 0 ? "none" : `${p.length} bytes, sha256 ${createHash("sha256").update(p).digest("hex").slice(0, 16)}…`;
}

/** Every tag of a machine as labelled lines: provider, key, heartbeat, decoded hardware report, installation. */
export function machineLines(m: Machine): MachineLine[] {
  const rows: MachineLine[] = [["machine", [m.machineId]], ["created", [at(m.createdAt)]]];
  const p = m.provided;
  if (p) {
    const extra = [p.status && `status ${p.status}`, p.address && `address ${p.address}`, p.location && `location ${p.location}`].filter(Boolean);
    rows.push(["provider", [`${p.provider} / ${p.providerId}${extra.length ? ` (${extra.join(", ")})` : ""}`]]);
  }
  rows.push(["agent key", m.agentStarted ? [`sha256:${m.agentStarted.keyFingerprint} (registered `, at(m.agentStarted.startedAt), ")"] : ["none registered"]]);
  rows.push(["heartbeat", m.agentHeartbeat ? [at(m.agentHeartbeat.lastHeartbeatAt)] : ["never"]]);
  const hw = m.hardwareReport;
  if (hw?.report) {
    const r = hw.report;
    const threads = r.cpu.reduce((a, c) => a + c.hardwareThreads, 0);
    const cores = r.cpu.reduce((a, c) => a + c.cores, 0);
    const model = [r.manufacturer, r.product].filter(Boolean).join(" ") || "unknown model";
    rows.push(["hardware", [`${model}${r.serialNumber ? `, serial ${r.serialNumber}` : ""} (reported `, at(hw.reportedAt), ")"]]);
    rows.push(["  cpu", [`${r.cpu.length} package(s), ${cores} cores, ${threads} threads${r.cpu[0] ? ` — ${r.cpu[0].model}` : ""}`]]);
    rows.push(["  memory", [`${humanBytes(r.memoryInstalledBytes)} installed, usable ratio ${r.memoryUsableRatio.toFixed(3)}`]]);
    for (const d of r.blockDevice) rows.push(["  disk", [`${humanBytes(d.capacityBytes)} ${[d.vendor, d.deviceModel].filter(Boolean).join(" ")}${d.serialNumber ? ` serial ${d.serialNumber}` : ""}`]]);
    for (const n of r.networkInterface) {
      const mac = Buffer.from(n.mac).toString("hex").replace(/(..)(?!$)/g, "$1:");
      rows.push(["  nic", [`${mac} ${n.driver} link ${n.linkUp ? "up" : "down"}${n.currentSpeedBytes ? ` ${Number(n.currentSpeedBytes * 8n) / 1e9} Gbit/s` : ""}`]]);
    }
    for (const w of hw.warnings) rows.push(["  warning", [w]]);
  } else {
    rows.push(["hardware", ["no report"]]);
  }
  const rq = m.installationRequest;
  if (rq) {
    const mp = rq.request?.type.case === "metropolis" ? rq.request.type.value : undefined;
    const img = mp?.osImage;
    const image = img ? `${img.host}/${img.repository}${img.tag ? `:${img.tag}` : ""}${img.digest ? `@${img.digest}` : ""}` : "-";
    rows.push(["install", [`generation ${rq.generation} to ${mp?.rootDevice ?? "?"}, image ${image} (requested `, at(rq.requestedAt), `)${m.installationPending ? " — pending" : ""}`]]);
    if (mp) rows.push(["  node parameters", [nodeParametersSummary(mp.nodeParameters)]]);
  }
  const rp = m.installationReport;
  if (rp) rows.push(["installed", [`generation ${rp.generation}: ${rp.success ? "success" : `error: ${rp.error}`} (`, at(rp.reportedAt), ")"]]);
  return rows;
}
