import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Machine } from "../../gen/bmaas/operator/v1/operator_pb.js";

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
