import type { JsonValue } from "./database.js";

// Whether a refused agent's hardware report describes the machine whose key
// it asks to replace: what an operator needs to accept a re-keyed machine
// safely. Compared on the decoded JSON view (bmdb knows no protobuf).

/**
 * identical: byte for byte the last accepted report; same_identity: the same
 * DMI identity (manufacturer, product, serial), NIC MACs and disk serials,
 * other details differ (a link went down, a warning); different: not the
 * same machine as far as the reports tell; no_report: the request carried
 * none; no_accepted_report: the machine never reported.
 */
export type HardwareMatch = "identical" | "same_identity" | "different" | "no_report" | "no_accepted_report";

export interface StoredReport {
  raw: Uint8Array;
  json: JsonValue;
}

type Obj = { [key: string]: JsonValue };
const obj = (v: JsonValue | undefined): Obj => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
const list = (v: JsonValue | undefined): JsonValue[] => (Array.isArray(v) ? v : []);

/** What identifies the hardware in an AgentHardwareReport's JSON view. */
function identity(json: JsonValue): string {
  const node = obj(obj(json)["report"]);
  const sorted = (xs: JsonValue[]) => xs.map((x) => JSON.stringify(x ?? null)).sort();
  return JSON.stringify({
    manufacturer: node["manufacturer"] ?? null,
    product: node["product"] ?? null,
    serial: node["serialNumber"] ?? null,
    macs: sorted(list(node["networkInterface"]).map((n) => obj(n)["mac"] ?? null)),
    disks: sorted(list(node["blockDevice"]).map((b) => obj(b)["serialNumber"] ?? null)),
  });
}

/** A stored report from its two nullable columns. */
export const storedReport = (raw: Uint8Array | null, json: JsonValue | null): StoredReport | null => (raw && json !== null ? { raw, json } : null);

export function hardwareMatch(pending: StoredReport | null, accepted: StoredReport | null): HardwareMatch {
  if (!pending) return "no_report";
  if (!accepted) return "no_accepted_report";
  if (Buffer.from(pending.raw).equals(Buffer.from(accepted.raw))) return "identical";
  return identity(pending.json) === identity(accepted.json) ? "same_identity" : "different";
}
