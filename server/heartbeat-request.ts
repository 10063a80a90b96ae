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
      // protobuf-es's reader is lenient where Go's is not (lengths of 2^32 and
      // more wrap, over-long varints are skipped): the raw scan below follows
      // protowire, so that no request means one thing here and another there.
      const tag = readVarint(body, reader.pos);
      const no = Math.floor(tag.value / 8);
      const wireType = tag.value % 8;
      if (no < 1 || no > 0x1fffffff) throw new Error("bad field number");
      reader.pos = tag.next;
      if (wireType === WireType.LengthDelimited) {
        const len = readVarint(body, reader.pos);
        if (len.value > body.length - len.next) throw new Error("truncated field");
        const bytes = body.subarray(len.next, len.next + len.value);
        reader.pos = len.next + len.value;
        if (no === MACHINE_ID) out.machineId = bytes;
        else if (no === HARDWARE_REPORT) out.hardwareReport.push(bytes);
        else if (no === INSTALLATION_REPORT) out.installationReport.push(bytes);
      } else if (wireType === WireType.Varint) {
        reader.pos = readVarint(body, reader.pos).next;
      } else {
        // Other wire types, known field numbers included, are unknown fields (as in Go).
        reader.skip(wireType as WireType, no);
      }
    }
  } catch {
    throw invalid("malformed request: not a HeartbeatRequest");
  }
  return out;
}

/**
 * A varint as protowire reads it: at most 10 bytes, the 10th at most 1. Values
 * beyond 2^53 lose precision, which only matters where they are a length or a
 * tag, and those are refused by their bounds anyway.
 */
function readVarint(buf: Uint8Array, pos: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= buf.length) throw new Error("truncated varint");
    const b = buf[pos + i]!;
    if (i === 9 && b > 1) throw new Error("varint overflow");
    value += (b & 0x7f) * scale;
    scale *= 128;
    if (b < 0x80) return { value, next: pos + i + 1 };
  }
  throw new Error("varint too long");
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
  const { report, json } = decodeOrInvalid("hardware_report", () => {
    const report = fromBinary(AgentHardwareReportSchema, raw, { readUnknownFields: false });
    return { report, json: toJson(AgentHardwareReportSchema, report) as JsonValue };
  });
  checkJson(json, "");
  // The figures fleet stats sum, handed to bmdb as numbers (it reads no protobuf).
  const node = report.report;
  return {
    raw,
    json,
    cpuThreads: (node?.cpu ?? []).reduce((sum, cpu) => sum + cpu.hardwareThreads, 0),
    memoryBytes: node?.memoryInstalledBytes ?? 0n,
  };
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
