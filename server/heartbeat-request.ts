import { fromBinary, toJson } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { validate as isUuid } from "uuid";
import type { HeartbeatInput, JsonValue } from "../bmdb/index.js";
import { AgentHardwareReportSchema, OSInstallationReportSchema } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { Code, WireStatus } from "./grpc-wire.js";

// Decoding and validating a HeartbeatRequest from untrusted bytes. Only what we
// use is materialised: the top level is scanned field by field (unknown fields
// are skipped, never kept), the hardware report is decoded without its
// unknown fields — its raw bytes are what we store, exactly as sent — and
// every string that could reach the database is checked first, so that a bad
// field is INVALID_ARGUMENT with nothing written, never a database error.

/** What the server accepts of one agent request; see README "Security model". */
export const FIELD_LIMITS = {
  /** A UUID is 36 characters; anything much longer is not one and is not even decoded. */
  machineIdBytes: 64,
  /** Each string of the hardware report (vendor, model, serial, driver…) and each warning. */
  hardwareStringChars: 1024,
  /** Entries of each repeated field of the hardware report (CPUs, disks, NICs, warnings, speeds). */
  hardwareListEntries: 1024,
  /** An installation error message (kept in full on the machine; cut in history). */
  installationErrorChars: 8192,
} as const;

// HeartbeatRequest field numbers.
const MACHINE_ID = 1;
const HARDWARE_REPORT = 2;
const INSTALLATION_REPORT = 3;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function invalid(message: string): WireStatus {
  return new WireStatus(Code.INVALID_ARGUMENT, message);
}

interface TopLevel {
  machineId: Uint8Array | undefined;
  hardwareReport: Uint8Array[];
  installationReport: Uint8Array[];
}

/**
 * The fields we use, as raw bytes. A message field sent more than once is the
 * concatenation of its parts (protobuf merges them), so the stored bytes
 * decode to what a full parser saw.
 */
function scan(body: Uint8Array): TopLevel {
  const out: TopLevel = { machineId: undefined, hardwareReport: [], installationReport: [] };
  const reader = new BinaryReader(body);
  try {
    while (reader.pos < reader.len) {
      const [no, wireType] = reader.tag();
      if (wireType === WireType.LengthDelimited && no >= MACHINE_ID && no <= INSTALLATION_REPORT) {
        const bytes = reader.bytes();
        if (no === MACHINE_ID) out.machineId = bytes;
        else if (no === HARDWARE_REPORT) out.hardwareReport.push(bytes);
        else out.installationReport.push(bytes);
      } else {
        reader.skip(wireType, no);
      }
    }
  } catch {
    throw invalid("malformed request: not a HeartbeatRequest");
  }
  return out;
}

const join = (parts: Uint8Array[]): Uint8Array | undefined => (parts.length <= 1 ? parts[0] : Buffer.concat(parts));

function parseMachineId(bytes: Uint8Array | undefined): string {
  // Checked before decoding, so an oversized ID is neither decoded nor logged.
  if (!bytes || bytes.length > FIELD_LIMITS.machineIdBytes) throw invalid("machine_id must be a UUID");
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw invalid("machine_id must be a UUID");
  }
  if (!isUuid(text)) throw invalid("machine_id must be a UUID");
  return text.toLowerCase();
}

/** Every string and list of a decoded report within limits and free of NUL (PostgreSQL refuses NUL in text and jsonb). */
function checkJson(value: JsonValue, path: string): void {
  if (typeof value === "string") {
    if (value.length > FIELD_LIMITS.hardwareStringChars) throw invalid(`hardware_report: ${path} is longer than ${FIELD_LIMITS.hardwareStringChars} characters`);
    if (value.includes("\u0000")) throw invalid(`hardware_report: ${path} contains a NUL character`);
  } else if (Array.isArray(value)) {
    if (value.length > FIELD_LIMITS.hardwareListEntries) throw invalid(`hardware_report: ${path} has more than ${FIELD_LIMITS.hardwareListEntries} entries`);
    value.forEach((v, i) => checkJson(v, `${path}[${i}]`));
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) checkJson(v, path ? `${path}.${k}` : k);
  }
}

function decodeOrInvalid<T>(what: string, decode: () => T): T {
  try {
    return decode();
  } catch {
    throw invalid(`malformed ${what} (bad encoding or invalid UTF-8)`);
  }
}

function parseHardwareReport(raw: Uint8Array | undefined): HeartbeatInput["hardwareReport"] {
  // An empty report carries nothing and must not erase a stored one.
  if (!raw || raw.length === 0) return undefined;
  const json = decodeOrInvalid("hardware_report", () =>
    toJson(AgentHardwareReportSchema, fromBinary(AgentHardwareReportSchema, raw, { readUnknownFields: false })),
  ) as JsonValue;
  checkJson(json, "");
  return { raw, json };
}

function parseInstallationReport(raw: Uint8Array | undefined): HeartbeatInput["installationReport"] {
  if (!raw) return undefined;
  const report = decodeOrInvalid("installation_report", () => fromBinary(OSInstallationReportSchema, raw, { readUnknownFields: false }));
  const result = report.result;
  if (result.case === undefined) throw invalid("installation_report must have success or error set");
  if (result.case === "success") return { generation: report.generation, result: "success", raw };
  const message = result.value.error;
  if (message.length > FIELD_LIMITS.installationErrorChars) {
    throw invalid(`installation_report error is longer than ${FIELD_LIMITS.installationErrorChars} characters`);
  }
  if (message.includes("\u0000")) throw invalid("installation_report error contains a NUL character");
  return { generation: report.generation, result: "error", errorMessage: message, raw };
}

/** A validated heartbeat, without the key (that comes from the connection). */
export type ParsedHeartbeat = Omit<HeartbeatInput, "publicKey">;

/** Decodes and validates a serialized HeartbeatRequest; throws INVALID_ARGUMENT. */
export function parseHeartbeatRequest(body: Uint8Array): ParsedHeartbeat {
  const top = scan(body);
  const machineId = parseMachineId(top.machineId);
  const parsed: ParsedHeartbeat = { machineId };
  const installationReport = parseInstallationReport(join(top.installationReport));
  if (installationReport) parsed.installationReport = installationReport;
  const hardwareReport = parseHardwareReport(join(top.hardwareReport));
  if (hardwareReport) parsed.hardwareReport = hardwareReport;
  return parsed;
}
