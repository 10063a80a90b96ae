import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { HardwareMatch, ImportOutcome, type AgentRequest, type FleetStatsResponse } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { ADMISSION_NAMES, humanAge } from "../../lib/display.js";

// How bmctl shows admission: pending and rejected keys, how a key was admitted.

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

export function admissionStatsLine(s: FleetStatsResponse): string {
  return `agents pending admission: ${s.agentsPending} (re-keyed machines: ${s.agentsPendingRekeyed}); rejected keys: ${s.agentsRejected}${s.agentsPending > 0n ? " — bmctl agent pending" : ""}`;
}
