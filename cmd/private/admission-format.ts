import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AdmissionState, HardwareMatch, ImportOutcome, type AgentRequest, type FleetStatsResponse, type Machine } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { humanAge } from "./format.js";

// How bmctl shows admission: pending and rejected keys, how a key was admitted.

export const ADMISSION_NAMES: Record<AdmissionState, string> = {
  [AdmissionState.UNSPECIFIED]: "?",
  [AdmissionState.PREAUTHORIZED]: "preauthorized",
  [AdmissionState.PENDING]: "pending",
  [AdmissionState.ACCEPTED]: "accepted",
  [AdmissionState.REJECTED]: "rejected",
};

export const HARDWARE_MATCH_NAMES: Record<HardwareMatch, string> = {
  [HardwareMatch.UNSPECIFIED]: "?",
  [HardwareMatch.IDENTICAL]: "identical to the accepted report",
  [HardwareMatch.SAME_IDENTITY]: "same hardware identity (serials, MACs)",
  [HardwareMatch.DIFFERENT]: "DIFFERENT hardware",
  [HardwareMatch.NO_REPORT]: "no report sent",
  [HardwareMatch.NO_ACCEPTED_REPORT]: "machine never reported",
};

const SHORT_MATCH: Record<HardwareMatch, string> = {
  [HardwareMatch.UNSPECIFIED]: "?",
  [HardwareMatch.IDENTICAL]: "identical",
  [HardwareMatch.SAME_IDENTITY]: "same",
  [HardwareMatch.DIFFERENT]: "DIFFERENT",
  [HardwareMatch.NO_REPORT]: "no report",
  [HardwareMatch.NO_ACCEPTED_REPORT]: "none accepted",
};

export const IMPORT_OUTCOME_NAMES: Record<ImportOutcome, string> = {
  [ImportOutcome.UNSPECIFIED]: "?",
  [ImportOutcome.CREATED]: "created",
  [ImportOutcome.KEY_SET]: "key set",
  [ImportOutcome.UNCHANGED]: "unchanged",
  [ImportOutcome.KEY_CONFLICT]: "key conflict",
};

const ago = (r: Timestamp | undefined, now: number) => (r ? humanAge(now - timestampDate(r).getTime()) : "-");

export const REQUEST_HEAD = ["MACHINE", "KEY", "STATE", "ATTEMPTS", "FIRST SEEN", "LAST SEEN", "REPLACES", "HARDWARE", "PROVIDER"];

export function requestRows(requests: AgentRequest[], now = Date.now()): string[][] {
  return requests.map((r) => [
    r.machineId,
    r.keyFingerprint.slice(0, 16),
    ADMISSION_NAMES[r.state],
    String(r.attempts),
    ago(r.firstSeenAt, now),
    ago(r.lastSeenAt, now),
    r.currentKeyFingerprint ? r.currentKeyFingerprint.slice(0, 16) : "-",
    SHORT_MATCH[r.hardwareMatch],
    r.provider ? `${r.provider}/${r.providerId}` : "-",
  ]);
}

/** The agent-key lines of `machine get`: the admitted key and every pending or rejected one. */
export function agentKeyRows(m: Machine, when: (ts: Machine["createdAt"]) => string, now = Date.now()): [string, string][] {
  const s = m.agentStarted;
  const rows: [string, string][] = [
    [
      "agent key",
      s ? `sha256:${s.keyFingerprint} ${ADMISSION_NAMES[s.admission]}${s.admittedBy ? ` by ${s.admittedBy}` : ""} (${when(s.startedAt)})` : "none admitted",
    ],
  ];
  for (const r of m.agentRequests) {
    const what =
      r.state === AdmissionState.PENDING
        ? `pending since ${ago(r.firstSeenAt, now)}, last ${ago(r.lastSeenAt, now)}, ${r.attempts} attempt(s); hardware: ${HARDWARE_MATCH_NAMES[r.hardwareMatch]} — bmctl agent accept ${m.machineId} ${r.keyFingerprint.slice(0, 16)}`
        : `rejected${r.decidedBy ? ` by ${r.decidedBy}` : ""}${r.reason ? ` (${r.reason})` : ""}`;
    rows.push([`  ${ADMISSION_NAMES[r.state]} key`, `sha256:${r.keyFingerprint} ${what}`]);
  }
  return rows;
}

export function admissionStatsLine(s: FleetStatsResponse): string {
  return `agents pending admission: ${s.agentsPending} (re-keyed machines: ${s.agentsPendingRekeyed}); rejected keys: ${s.agentsRejected}${s.agentsPending > 0n ? " — bmctl agent pending" : ""}`;
}
