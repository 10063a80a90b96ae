import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { connect as h2Connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { validate as isUuid } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeSchema } from "../gen/cloud/agent/api/hwreport_pb.js";
import {
  AgentHardwareReportSchema,
  HeartbeatRequestSchema,
  HeartbeatResponseSchema,
  OSInstallationReportSchema,
} from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { createAgentCertificate, generateAgentKey, rawEd25519PublicKey } from "../lib/certs.js";
import { testBackends } from "../test/helpers/databases.js";
import { frame, HEARTBEAT_PATH, splitAddress } from "../test/helpers/raw-grpc.js";
import { ecdsaSelfSigned, newAgent, startTestServer } from "../test/helpers/server.js";
import { FIELD_LIMITS } from "./heartbeat-request.js";

// A fuzz run against the agent listener (issue 7): ≥ 10,000 random and mutated
// Heartbeat calls over every kind of transport an attacker or a broken agent
// could bring, plus connections that are not TLS or HTTP/2 at all. Each call's
// expected outcome is computed independently of the server (an oracle: the
// transport's identity, gRPC's HTTP/2 mapping, protobuf's wire format as
// protowire reads it, the documented field limits) and every answer must be a
// status the oracle allows. The server shares this process, so its memory is
// this process's memory.
//
// The statuses a call may end with (decided here, checked per call):
// - OK only for a well-formed request naming the machine of the connection's
//   registered key; INVALID_ARGUMENT for anything malformed or over a field
//   limit; RESOURCE_EXHAUSTED for a message over the agent limit (256 KiB);
//   UNIMPLEMENTED for a wrong path, content type, encoding or compressed flag;
//   UNAUTHENTICATED for a transport without one Ed25519 certificate, and for a
//   valid request whose machine is not the key's; UNAVAILABLE only past
//   validation (pushback: busy, database).
// - INTERNAL never: it means a bug.
// - DEADLINE_EXCEEDED, or a reset stream, only for a call whose grpc-timeout
//   has already expired on arrival; no answer at all is never right.
// - A reset stream without status otherwise only when the client lied in the
//   gRPC framing. A stream the server resets before any response
//   (REFUSED_STREAM, ENHANCE_YOUR_CALM: not processed) is retried, as gRPC
//   clients retry REFUSED_STREAM, and counted in the output.
// - Encodings that are valid protobuf but not canonical, on which protobuf
//   implementations legitimately differ (overlong tags, field numbers past
//   2^29-1, deep groups, an overflowing 10th varint byte), may also be refused.
//
// Replay a run with FUZZ_SEED=<seed> (printed first); each case is generated
// from (seed, case index) alone, so a failing case can be rebuilt in isolation
// whatever the interleaving. FUZZ_REQUESTS changes the number of calls.

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000);
const CONCURRENCY = 32;
const RAW_SOCKETS = 80;
const HANDSHAKE_MS = 1_000;
const AGENT_MAX_REQUEST_BYTES = 256 * 1024; // the server's default for agents
/** A call with no status after this long is a call the server never answered. */
const CALL_TIMEOUT_MS = 5_000;
const RSS_GROWTH_BOUND = 150 * 1024 * 1024;
/** JS heap still in use after the run and a full GC, compared with before: what 10,000 calls leave behind. */
const HEAP_RETAINED_BOUND = 32 * 1024 * 1024;
const MB = 1024 * 1024;

// A full garbage collection on demand (without --expose-gc on the command line),
// so that memory before and after the run is compared without garbage.
setFlagsFromString("--expose-gc");
const collectGarbage = runInNewContext("gc") as () => void;
async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  collectGarbage();
  await new Promise((r) => setTimeout(r, 200));
  collectGarbage();
  return process.memoryUsage();
}

const Code = { CONNECT_FAILED: -4, NO_STATUS: -1, NO_ANSWER: -2, OK: 0, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16 };
const CODE_NAMES: Record<number, string> = {
  [-4]: "could not connect (or refused by a TLS alert)",
  [-3]: "client could not send",
  [-2]: "no answer (client gave up)",
  [-1]: "no status (stream reset)",
  0: "OK",
  1: "CANCELLED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  8: "RESOURCE_EXHAUSTED",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  16: "UNAUTHENTICATED",
};
const NON_CANONICAL = "non-canonical encoding (either answer)";
const NEW_HEARTBEAT_PATH = "/cloud.agent.api.AgentCallback/Heartbeat";

// ---------------------------------------------------------------------------
// Seeded randomness: one generator per case, from (seed, index).

function hash32(a: number, b: number): number {
  let h = (a ^ Math.imul(b + 0x9e3779b9, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** mulberry32 */
  float(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  weighted<T>(entries: readonly (readonly [number, T])[]): T {
    let r = this.float() * entries.reduce((s, [w]) => s + w, 0);
    for (const [w, v] of entries) if ((r -= w) < 0) return v;
    return entries[entries.length - 1]![1];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  bigint64(): bigint {
    return BigInt.asIntN(64, (BigInt(this.int(2 ** 32)) << 32n) | BigInt(this.int(2 ** 32)));
  }
}

// ---------------------------------------------------------------------------
// Protobuf wire helpers (written here, not borrowed from the server).

function varint(v: bigint | number): Buffer {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  do {
    const b = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x > 0n ? b | 0x80 : b);
  } while (x > 0n);
  return Buffer.from(out);
}
/** value encoded in exactly n bytes (n ≥ the canonical length): an overlong but legal varint when n ≤ 10. */
function overlongVarint(v: number, n: number): Buffer {
  const out: number[] = [];
  let x = BigInt(v);
  for (let i = 0; i < n; i++) {
    const b = Number(x & 0x7fn);
    x >>= 7n;
    out.push(i < n - 1 ? b | 0x80 : b);
  }
  return Buffer.from(out);
}
const tag = (no: number, wireType: number) => varint((BigInt(no) << 3n) | BigInt(wireType));
const lenField = (no: number, payload: Uint8Array) => Buffer.concat([tag(no, 2), varint(payload.length), payload]);

interface WireField {
  no: number;
  wireType: number;
  start: number;
  end: number;
  /** LEN payload bounds */
  payloadStart?: number;
  lengthStart?: number;
}

/**
 * A varint: at most 10 bytes (every protobuf implementation refuses more).
 * `overflow`: the 10th byte holds more than bit 63, which protowire refuses
 * and other implementations drop — either reading is legitimate.
 */
function readVarint(b: Uint8Array, pos: number): { value: bigint; next: number; overflow: boolean } | undefined {
  let v = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= b.length) return undefined;
    const byte = b[pos + i]!;
    v |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) return { value: BigInt.asUintN(64, v), next: pos + i + 1, overflow: i === 9 && byte > 1 };
  }
  return undefined;
}

/**
 * The top level of a message as protowire (Go) reads it. `ambiguous` marks
 * non-canonical encodings on which protobuf implementations legitimately
 * differ (overlong tags, field numbers beyond 2^29-1, groups nested past 100,
 * a varint's 10th byte beyond bit 63);
 * the server may refuse those even when protowire would accept them.
 */
function scanWire(b: Uint8Array): { fields: WireField[]; error?: string; ambiguous: boolean } {
  const fields: WireField[] = [];
  let ambiguous = false;
  let pos = 0;
  const skipValue = (no: number, wireType: number, depth: number): string | undefined => {
    switch (wireType) {
      case 0: {
        const v = readVarint(b, pos);
        if (!v) return "bad varint";
        if (v.overflow) ambiguous = true;
        pos = v.next;
        return;
      }
      case 1:
        if (pos + 8 > b.length) return "truncated fixed64";
        pos += 8;
        return;
      case 5:
        if (pos + 4 > b.length) return "truncated fixed32";
        pos += 4;
        return;
      case 2: {
        const l = readVarint(b, pos);
        if (!l) return "bad length";
        if (l.value > BigInt(b.length - l.next)) return "length past the end";
        pos = l.next + Number(l.value);
        return;
      }
      case 3: {
        if (depth > 100) ambiguous = true;
        for (;;) {
          const t = readTag();
          if (typeof t === "string") return t;
          if (t.wireType === 4) return t.no === no ? undefined : "mismatched end group";
          const e = skipValue(t.no, t.wireType, depth + 1);
          if (e) return e;
        }
      }
      default:
        return `wire type ${wireType}`;
    }
  };
  const readTag = (): { no: number; wireType: number } | string => {
    const start = pos;
    const t = readVarint(b, pos);
    if (!t) return "bad tag";
    pos = t.next;
    if (t.next - start > 5) ambiguous = true;
    const no = t.value >> 3n;
    if (no < 1n || no > 0x7fffffffn) return "bad field number";
    if (no > 0x1fffffffn) ambiguous = true;
    const wireType = Number(t.value & 7n);
    if (wireType > 5) return `wire type ${wireType}`;
    return { no: Number(no), wireType };
  };
  while (pos < b.length) {
    const start = pos;
    const t = readTag();
    if (typeof t === "string") return { fields, error: t, ambiguous };
    if (t.wireType === 4) return { fields, error: "end group without start", ambiguous };
    const lengthStart = pos;
    const e = skipValue(t.no, t.wireType, 1);
    if (e) return { fields, error: e, ambiguous };
    const f: WireField = { no: t.no, wireType: t.wireType, start, end: pos };
    if (t.wireType === 2) {
      f.lengthStart = lengthStart;
      f.payloadStart = readVarint(b, lengthStart)!.next;
    }
    fields.push(f);
  }
  return { fields, ambiguous };
}

// ---------------------------------------------------------------------------
// The oracle: what a HeartbeatRequest body must be answered, from the spec.

type BodyVerdict = { valid: true; machineId: string } | { valid: false; why: string };

/** JSON strings and lists within the documented limits, no NUL (mirrors the README's Security model). */
function jsonWithinLimits(value: unknown): string | undefined {
  if (typeof value === "string") {
    if (value.length > FIELD_LIMITS.hardwareStringChars) return "string too long";
    if (value.includes("\u0000")) return "NUL in string";
  } else if (Array.isArray(value)) {
    if (value.length > FIELD_LIMITS.hardwareListEntries) return "list too long";
    for (const v of value) {
      const e = jsonWithinLimits(v);
      if (e) return e;
    }
  } else if (value !== null && typeof value === "object") {
    for (const v of Object.values(value)) {
      const e = jsonWithinLimits(v);
      if (e) return e;
    }
  }
  return undefined;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function judgeBody(body: Uint8Array): BodyVerdict & { ambiguous: boolean } {
  const scan = scanWire(body);
  const ambiguous = scan.ambiguous;
  if (scan.error) return { valid: false, why: `top level: ${scan.error}`, ambiguous };
  let machineId: Uint8Array | undefined;
  const hw: Uint8Array[] = [];
  const inst: Uint8Array[] = [];
  for (const f of scan.fields) {
    // A known field with another wire type is an unknown field to protowire.
    if (f.wireType !== 2 || f.no > 3) continue;
    const payload = body.subarray(f.payloadStart!, f.end);
    if (f.no === 1) machineId = payload;
    else if (f.no === 2) hw.push(payload);
    else inst.push(payload);
  }
  if (!machineId) return { valid: false, why: "no machine_id", ambiguous };
  let id: string;
  try {
    id = strictUtf8.decode(machineId);
  } catch {
    return { valid: false, why: "machine_id not UTF-8", ambiguous };
  }
  if (!isUuid(id)) return { valid: false, why: "machine_id not a UUID", ambiguous };
  if (inst.length > 0) {
    let report;
    try {
      report = fromBinary(OSInstallationReportSchema, Buffer.concat(inst), { readUnknownFields: false });
    } catch {
      return { valid: false, why: "installation_report malformed", ambiguous };
    }
    if (report.result.case === undefined) return { valid: false, why: "installation_report without result", ambiguous };
    if (report.result.case === "error") {
      const e = report.result.value.error;
      if (e.length > FIELD_LIMITS.installationErrorChars) return { valid: false, why: "installation error too long", ambiguous };
      if (e.includes("\u0000")) return { valid: false, why: "NUL in installation error", ambiguous };
    }
  }
  const hwBytes = Buffer.concat(hw);
  if (hwBytes.length > 0) {
    let json: unknown;
    try {
      json = toJson(AgentHardwareReportSchema, fromBinary(AgentHardwareReportSchema, hwBytes, { readUnknownFields: false }));
    } catch {
      return { valid: false, why: "hardware_report malformed", ambiguous };
    }
    const e = jsonWithinLimits(json);
    if (e) return { valid: false, why: `hardware_report: ${e}`, ambiguous };
  }
  return { valid: true, machineId: id.toLowerCase(), ambiguous };
}

// ---------------------------------------------------------------------------
// Cases.

type TransportKind = "agent" | "two-certs" | "unregistered" | "plaintext" | "tls-no-cert" | "ecdsa";
const TRANSPORTS: readonly (readonly [number, TransportKind])[] = [
  [72, "agent"],
  [5, "two-certs"],
  [8, "unregistered"],
  [5, "plaintext"],
  [5, "tls-no-cert"],
  [5, "ecdsa"],
];

interface Case {
  index: number;
  transport: TransportKind;
  /** Which registered agent's connection (agent). */
  agent: number;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** What was done to it, for the failure report. */
  notes: string[];
  /** The client broke gRPC's framing on purpose. */
  lyingFrame: boolean;
  expected: Set<number>;
  /** Why that expectation, for the failure report. */
  reason: string;
  /** Body verdict when the body is judged at all. */
  okAllowed: boolean;
}

interface World {
  machines: string[]; // registered machine of agent k
  otherRegistered: string; // registered machine no test connection holds the key of
}

const MARKER = Buffer.from([0x01, 0x02, 0x03]);
const MARKER_TEXT = "\u0001\u0002\u0003";
const POISONS: readonly (readonly [string, number[]])[] = [
  ["invalid byte ff", [0xff, 0xfe, 0xfd]],
  ["overlong NUL c0 80", [0xc0, 0x80, 0x41]],
  ["UTF-16 surrogate", [0xed, 0xa0, 0x80]],
  ["NUL", [0x41, 0x00, 0x42]],
  ["truncated sequence", [0xe2, 0x82, 0x41]],
  ["beyond U+10FFFF", [0xf4, 0x90, 0x80]],
  ["control characters (valid)", [0x01, 0x02, 0x03]],
];

function randomText(r: Rng, notes: string[]): string {
  const kind = r.weighted<string>([
    [50, "ascii"],
    [12, "unicode"],
    [6, "long"],
    [6, "marker"],
    [3, "nul"],
    [3, "empty"],
  ]);
  const ascii = () => Array.from({ length: r.range(1, 24) }, () => String.fromCharCode(r.range(0x20, 0x7e))).join("");
  switch (kind) {
    case "unicode":
      return Array.from({ length: r.range(1, 12) }, () => r.pick(["é", "中", "𝄞", "😀", "ß", "\u200b", "\ufeff", "a", "\uffff"])).join("");
    case "long":
      return "L".repeat(r.pick([1000, 1024, 1025, 1100, 3000]));
    case "marker":
      notes.push("string with poison marker");
      return ascii() + MARKER_TEXT + ascii();
    case "nul":
      notes.push("string with NUL");
      return ascii() + "\u0000" + ascii();
    case "empty":
      return "";
    default:
      return ascii();
  }
}

function randomNode(r: Rng, notes: string[]) {
  const list = <T>(max: number, f: () => T): T[] => Array.from({ length: r.int(max + 1) }, f);
  const bigList = r.chance(0.03);
  if (bigList) notes.push("long list");
  return create(NodeSchema, {
    manufacturer: randomText(r, notes),
    product: randomText(r, notes),
    serialNumber: r.chance(0.5) ? randomText(r, notes) : "",
    memoryInstalledBytes: r.chance(0.9) ? BigInt(r.int(2 ** 40)) : r.bigint64(),
    memoryUsableRatio: r.weighted([
      [8, r.float()],
      [1, NaN],
      [1, Infinity],
      [1, -1e38],
    ]),
    cpu: list(3, () => ({
      cores: r.weighted([
        [9, r.range(1, 128)],
        [1, -r.int(2 ** 31)],
      ]),
      hardwareThreads: r.range(1, 256),
      vendor: randomText(r, notes),
      model: randomText(r, notes),
      ...(r.chance(0.7) && { architecture: { case: "x8664" as const, value: { family: r.int(20), model: r.int(200), stepping: r.int(16) } } }),
    })),
    blockDevice: list(4, () => ({
      vendor: randomText(r, notes),
      deviceModel: randomText(r, notes),
      serialNumber: randomText(r, notes),
      wwn: r.bytes(r.pick([0, 8, 16, 800])),
      rotational: r.chance(0.5),
      capacityBytes: BigInt(r.int(2 ** 44)),
      logicalBlockSizeBytes: r.pick([512, 4096]),
      physicalBlockSizeBytes: r.pick([512, 4096]),
      protocol: r.weighted([
        [9, r.int(5)],
        [1, r.range(5, 1000)],
      ]),
      criticalWarning: r.chance(0.1),
      ...(r.chance(0.5) && { mediaErrors: BigInt(r.int(1000)) }),
      ...(r.chance(0.5) && { availableSpareRatio: r.float() }),
    })),
    networkInterface: list(3, () => ({
      mac: r.bytes(r.pick([6, 6, 6, 0, 20])),
      driver: randomText(r, notes),
      supportedSpeedBytes: Array.from({ length: bigList ? r.pick([1024, 1025, 2000]) : r.int(4) }, () => BigInt(r.int(2 ** 36))),
      linkUp: r.chance(0.5),
      currentSpeedBytes: BigInt(r.int(2 ** 36)),
    })),
    efiSupport: r.weighted([
      [9, r.int(5)],
      [1, r.range(5, 99)],
    ]),
  });
}

/** A version-4 UUID from the case's generator (replayable, unlike uuid's v4). */
function randomUuid(r: Rng): string {
  const b = r.bytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function randomMachineId(r: Rng, world: World, own: string | undefined, notes: string[]): string | undefined {
  const registered = own ?? r.pick(world.machines);
  const choice = r.weighted<string>([
    [60, "own"],
    [5, "own-upper"],
    [8, "other-registered"],
    [8, "unregistered"],
    [15, "garbage"],
    [4, "missing"],
  ]);
  notes.push(`machine_id: ${choice}`);
  switch (choice) {
    case "own":
      return registered;
    case "own-upper":
      return registered.toUpperCase();
    case "other-registered":
      return r.chance(0.5) ? world.otherRegistered : r.pick(world.machines.filter((m) => m !== registered).concat(world.otherRegistered));
    case "unregistered":
      return r.chance(0.9) ? randomUuid(r) : r.pick(["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]);
    case "missing":
      return undefined;
    default:
      return r.pick([
        () => "",
        () => "not-a-uuid",
        () => registered.replace(/-/g, ""),
        () => `{${registered}}`,
        () => registered + " ",
        () => registered.slice(0, 14) + "0" + registered.slice(15), // version 0
        () => registered + "\u0000",
        () => registered.slice(0, 10) + MARKER_TEXT + registered.slice(13),
        () => "x".repeat(r.pick([37, 64, 65, 1000, 100_000])),
        () => randomText(r, notes),
      ])();
  }
}

/** A HeartbeatRequest as an agent could send it, before any mutation. */
function validishRequest(r: Rng, world: World, own: string | undefined, notes: string[]): Buffer {
  const machineId = randomMachineId(r, world, own, notes);
  const init: Parameters<typeof create<typeof HeartbeatRequestSchema>>[1] = {};
  if (machineId !== undefined) init.machineId = machineId;
  if (r.chance(0.4)) {
    notes.push("hardware report");
    init.hardwareReport = {
      ...(r.chance(0.95) && { report: randomNode(r, notes) }),
      warning: Array.from({ length: r.chance(0.02) ? 1100 : r.int(3) }, () => randomText(r, notes)),
    };
  }
  if (r.chance(0.2)) {
    notes.push("installation report");
    const generation = r.pick([0n, 1n, 7n, r.bigint64()]);
    const kind = r.weighted([
      [5, "success"],
      [5, "error"],
      [1, "none"],
    ] as const);
    init.installationReport = {
      generation,
      result:
        kind === "success"
          ? { case: "success", value: {} }
          : kind === "error"
            ? { case: "error", value: { error: r.chance(0.1) ? "E".repeat(r.pick([8192, 8193, 20_000])) : randomText(r, notes) } }
            : { case: undefined },
    };
  }
  let bytes = Buffer.from(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, init)));
  // Poison every marker with the same byte sequence (lengths unchanged).
  if (bytes.includes(MARKER)) {
    const [name, poison] = r.pick(POISONS);
    notes.push(`poison: ${name}`);
    let at = bytes.indexOf(MARKER);
    while (at >= 0) {
      bytes.set(poison, at);
      at = bytes.indexOf(MARKER, at + 3);
    }
  }
  if (r.chance(0.01)) {
    // A genuinely large request over the agent limit (RESOURCE_EXHAUSTED from its prefix).
    notes.push("oversized");
    bytes = Buffer.concat([bytes, lenField(2, toBinary(AgentHardwareReportSchema, create(AgentHardwareReportSchema, { warning: Array(300).fill("w".repeat(1000)) })))]);
  }
  return bytes;
}

/** A random field the schema does not have (or a malformed one). */
function unknownField(r: Rng, notes: string[]): Buffer {
  const no = r.pick([4, 5, 15, 16, 99, 2047, 100_000, 0x1fffffff, r.range(4, 0x1fffffff)]);
  const kind = r.pick(["varint", "varint-max", "fixed64", "fixed32", "len", "group", "unbalanced-group", "end-group", "wire-type-6", "field-0", "huge-number"]);
  notes.push(`unknown field ${no} (${kind})`);
  switch (kind) {
    case "varint":
      return Buffer.concat([tag(no, 0), varint(r.int(2 ** 32))]);
    case "varint-max":
      return Buffer.concat([tag(no, 0), varint(-1n)]);
    case "fixed64":
      return Buffer.concat([tag(no, 1), r.bytes(8)]);
    case "fixed32":
      return Buffer.concat([tag(no, 5), r.bytes(4)]);
    case "len":
      return lenField(no, r.bytes(r.int(64)));
    case "group": {
      const depth = r.pick([1, 2, 5, 120]);
      const open = Array.from({ length: depth }, () => tag(no, 3));
      const close = Array.from({ length: depth }, () => tag(no, 4));
      return Buffer.concat([...open, tag(no + 1 > 0x1fffffff ? 4 : no + 1, 0), varint(1), ...close]);
    }
    case "unbalanced-group":
      return Buffer.concat([tag(no, 3), tag(no, 0), varint(1)]);
    case "end-group":
      return tag(no, 4);
    case "wire-type-6":
      return Buffer.concat([tag(no, 6), r.bytes(4)]);
    case "field-0":
      return Buffer.concat([Buffer.of(0x00), varint(1)]);
    default:
      // Field numbers from 2^29 (beyond protobuf's range) up to 2^32.
      return Buffer.concat([varint((BigInt(r.range(0x20000000, 0xffffffff)) << 3n) | 0n), varint(1)]);
  }
}

type Mutation = (r: Rng, b: Buffer, notes: string[]) => Buffer;

const fieldBoundaries = (b: Buffer): number[] => {
  const s = scanWire(b);
  return [0, ...s.fields.map((f) => f.end)];
};

const MUTATIONS: readonly (readonly [number, string, Mutation])[] = [
  [
    10,
    "bit flips",
    (r, b) => {
      const c = Buffer.from(b);
      for (let n = r.range(1, 4); n > 0 && c.length > 0; n--) c[r.int(c.length)]! ^= 1 << r.int(8);
      return c;
    },
  ],
  [8, "truncation", (r, b) => b.subarray(0, r.int(b.length + 1))],
  [
    8,
    "byte insertion",
    (r, b) => {
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), r.bytes(r.range(1, 16)), b.subarray(at)]);
    },
  ],
  [
    8,
    "byte deletion",
    (r, b) => {
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + r.range(1, 16))]);
    },
  ],
  [
    8,
    "duplicated field",
    (r, b) => {
      const { fields } = scanWire(b);
      if (fields.length === 0) return b;
      const f = r.pick(fields);
      const at = r.pick(fieldBoundaries(b).filter((x) => x <= b.length));
      return Buffer.concat([b.subarray(0, at), b.subarray(f.start, f.end), b.subarray(at)]);
    },
  ],
  [
    10,
    "unknown field",
    (r, b, notes) => {
      const at = r.pick(fieldBoundaries(b));
      return Buffer.concat([b.subarray(0, at), unknownField(r, notes), b.subarray(at)]);
    },
  ],
  [
    8,
    "wrong wire type",
    (r, b, notes) => {
      const { fields } = scanWire(b);
      const known = fields.filter((f) => f.no <= 3 && f.wireType === 2);
      if (known.length === 0) return b;
      const f = r.pick(known);
      const wt = r.pick([0, 1, 5, 3]);
      notes.push(`field ${f.no} as wire type ${wt}`);
      const value = wt === 0 ? varint(r.int(1000)) : wt === 1 ? r.bytes(8) : wt === 5 ? r.bytes(4) : Buffer.concat([tag(9, 0), varint(1), tag(f.no, 4)]);
      return Buffer.concat([b.subarray(0, f.start), tag(f.no, wt), value, b.subarray(f.end)]);
    },
  ],
  [
    8,
    "huge varint",
    (r, b, notes) => {
      const { fields } = scanWire(b);
      const lens = fields.filter((f) => f.wireType === 2);
      const kind = r.pick(["overlong length", "length + 2^32", "11-byte varint", "10th byte > 1", "overlong tag"]);
      notes.push(kind);
      const f = lens.length > 0 ? r.pick(lens) : undefined;
      if (kind === "11-byte varint" || kind === "10th byte > 1" || !f) {
        const v = kind === "11-byte varint" ? Buffer.concat([Buffer.alloc(10, 0xff), Buffer.of(0x01)]) : Buffer.concat([Buffer.alloc(9, 0xff), Buffer.of(0x7f)]);
        const at = r.pick(fieldBoundaries(b));
        return Buffer.concat([b.subarray(0, at), tag(r.range(4, 50), 0), v, b.subarray(at)]);
      }
      const length = f.end - f.payloadStart!;
      if (kind === "overlong tag") {
        // The same tag in 6..10 bytes: legal for protowire, refused by some parsers.
        return Buffer.concat([b.subarray(0, f.start), overlongVarint(f.no * 8 + 2, r.range(6, 10)), b.subarray(f.lengthStart!)]);
      }
      const encoded = kind === "overlong length" ? overlongVarint(length, r.range(2, 10)) : varint(BigInt(length) + (1n << BigInt(r.pick([32, 33, 40, 63]))));
      return Buffer.concat([b.subarray(0, f.lengthStart!), encoded, b.subarray(f.payloadStart!)]);
    },
  ],
  [
    8,
    "lying length",
    (r, b, notes) => {
      const { fields } = scanWire(b);
      const lens = fields.filter((f) => f.wireType === 2);
      if (lens.length === 0) return b;
      const f = r.pick(lens);
      const length = f.end - f.payloadStart!;
      const lie = r.pick([length + r.range(1, 10), Math.max(0, length - r.range(1, 10)), 0x7fffffff, 0xffffffff, b.length * 2]);
      notes.push(`length ${length} → ${lie}`);
      return Buffer.concat([b.subarray(0, f.lengthStart!), varint(lie), b.subarray(f.payloadStart!)]);
    },
  ],
];

/** Mutates the hardware report inside the request, keeping the outer framing right. */
function mutateNested(r: Rng, b: Buffer, notes: string[]): Buffer {
  const { fields } = scanWire(b);
  const hw = fields.filter((f) => f.no === 2 && f.wireType === 2);
  if (hw.length === 0) return b;
  const f = r.pick(hw);
  const [, name, mutate] = r.weighted(MUTATIONS.map((m) => [m[0], m] as const));
  notes.push(`inside hardware_report: ${name}`);
  const inner = mutate(r, Buffer.from(b.subarray(f.payloadStart!, f.end)), notes);
  return Buffer.concat([b.subarray(0, f.start), lenField(2, inner), b.subarray(f.end)]);
}

function makeCase(index: number, world: World): Case {
  const r = new Rng(hash32(SEED, index));
  const notes: string[] = [];
  const transport = r.weighted(TRANSPORTS);
  // Two-certificate connections send agent 0's certificate and a stranger's.
  const agent = transport === "two-certs" ? 0 : r.int(world.machines.length);
  const own = transport === "agent" ? world.machines[agent] : undefined;
  let message = validishRequest(r, world, own, notes);
  const rounds = r.weighted([
    [35, 0],
    [35, 1],
    [20, 2],
    [10, 3],
  ]);
  for (let i = 0; i < rounds; i++) {
    if (r.chance(0.25)) {
      message = mutateNested(r, message, notes);
    } else {
      const [, name, mutate] = r.weighted(MUTATIONS.map((m) => [m[0], m] as const));
      notes.push(name);
      message = mutate(r, message, notes);
    }
  }

  // gRPC framing: mostly right, sometimes a lie.
  let body = frame(message);
  let lyingFrame = false;
  if (r.chance(0.1)) {
    lyingFrame = true;
    const lie = r.pick(["longer prefix", "shorter prefix", "compressed flag", "other flag", "two messages", "empty body", "partial prefix", "trailing bytes", "prefix over the limit", "prefix 2^32-1"]);
    notes.push(`frame: ${lie}`);
    switch (lie) {
      case "longer prefix":
        body = frame(message, message.length + r.range(1, 1000));
        break;
      case "shorter prefix":
        body = frame(message, Math.max(0, message.length - r.range(1, message.length + 1)));
        break;
      case "compressed flag":
        body[0] = 1;
        break;
      case "other flag":
        body[0] = r.range(2, 255);
        break;
      case "two messages":
        body = Buffer.concat([frame(message), frame(message)]);
        break;
      case "empty body":
        body = Buffer.alloc(0);
        break;
      case "partial prefix":
        body = body.subarray(0, r.range(1, 4));
        break;
      case "trailing bytes":
        body = Buffer.concat([body, r.bytes(r.range(1, 8))]);
        break;
      case "prefix over the limit":
        body = frame(message, AGENT_MAX_REQUEST_BYTES + r.range(1, 10 * MB));
        break;
      default:
        body = frame(message, 0xffffffff);
    }
  }

  // Headers: mostly right, sometimes not.
  let path = r.chance(0.8) ? HEARTBEAT_PATH : NEW_HEARTBEAT_PATH;
  const headers: Record<string, string> = {};
  if (r.chance(0.1)) {
    const what = r.pick(["path", "content-type", "grpc-encoding", "grpc-timeout", "grpc-timeout", "extra headers"]);
    switch (what) {
      case "path":
        path = r.pick([
          "/",
          "/cloud.bmaas.server.api.AgentCallback/heartbeat",
          "/cloud.bmaas.server.api.AgentCallback/Heartbeat/",
          `${HEARTBEAT_PATH}?x=1`,
          "/cloud.bmaas.server.api.AgentCallback/Register",
          "/bmaas.operator.v1.OperatorService/ListMachines",
          "/grpc.health.v1.Health/Check",
          "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          "//" + HEARTBEAT_PATH,
          "/" + "a".repeat(r.pick([100, 8000])),
          "/" + Array.from({ length: r.range(1, 60) }, () => String.fromCharCode(r.range(0x21, 0x7e))).join(""),
        ]);
        notes.push(`path ${path.slice(0, 60)}`);
        break;
      case "content-type":
        headers["content-type"] = r.pick(["text/plain", "application/json", "application/proto", "", "application/x-protobuf", "multipart/form-data", "application/grpc-web", "application/grpc+json"]);
        notes.push(`content-type "${headers["content-type"]}"`);
        break;
      case "grpc-encoding":
        headers["grpc-encoding"] = r.pick(["gzip", "gzip", "deflate", "snappy", "identity", "", "x-unknown"]);
        notes.push(`grpc-encoding "${headers["grpc-encoding"]}"`);
        break;
      case "grpc-timeout":
        headers["grpc-timeout"] = r.pick([
          "abc",
          "-5S",
          "1.5S",
          "123456789S",
          "S",
          "5s",
          "5 S",
          "",
          "99999999H",
          "1000000000000000000000m",
          "0x10S",
          "1e3m",
          // Valid and already expired: the call must still end with a status.
          "0m",
          "1n",
          "1u",
        ]);
        notes.push(`grpc-timeout "${headers["grpc-timeout"]}"`);
        break;
      default:
        for (let n = r.range(1, 20); n > 0; n--) headers[`x-junk-${n}`] = "j".repeat(r.int(200));
        headers["grpc-accept-encoding"] = "gzip,deflate";
        headers["user-agent"] = "fuzz/0.0";
        notes.push("extra headers");
    }
  }

  const c: Case = { index, transport, agent, path, headers, body, notes, lyingFrame, expected: new Set(), reason: "", okAllowed: false };
  decide(c, world);
  return c;
}

/** The statuses the call may end with, from gRPC's HTTP/2 mapping and the contract. */
function decide(c: Case, world: World): void {
  const set = (reason: string, ...codes: number[]) => {
    c.reason = reason;
    codes.forEach((x) => c.expected.add(x));
  };
  // A connection without exactly one Ed25519 certificate is refused from the headers alone, never
  // reading the body; whether a call that is not a Heartbeat at all hears UNIMPLEMENTED or
  // UNAUTHENTICATED first is the server's choice. A leaf sent with an unrelated certificate
  // ends the TLS handshake itself (the native guard) with a "bad certificate" alert.
  if (c.transport === "two-certs") return set("transport two-certs: refused in the TLS handshake", Code.CONNECT_FAILED);
  const refusedTransport = c.transport === "plaintext" || c.transport === "tls-no-cert" || c.transport === "ecdsa";
  const type = c.headers["content-type"] ?? "application/grpc";
  // "application/grpc", "application/grpc+proto", "application/grpc;…" are gRPC; other "application/grpc…"
  // types (grpc-web) are not, but taking them as gRPC is harmless: either answer.
  const grpcType = type === "application/grpc" || type.startsWith("application/grpc+") || type.startsWith("application/grpc;");
  const encoding = c.headers["grpc-encoding"];
  const badHeaders = !type.startsWith("application/grpc")
    ? "not gRPC"
    : c.path !== HEARTBEAT_PATH && c.path !== NEW_HEARTBEAT_PATH
      ? "unknown method"
      : encoding !== undefined && encoding !== "identity"
        ? "compressed"
        : undefined;
  if (!grpcType) c.expected.add(Code.UNIMPLEMENTED);
  if (badHeaders && refusedTransport) return set(`${badHeaders}, transport ${c.transport}`, Code.UNIMPLEMENTED, Code.UNAUTHENTICATED);
  if (badHeaders) return set(badHeaders, Code.UNIMPLEMENTED);
  if (refusedTransport) return set(`transport ${c.transport}`, Code.UNAUTHENTICATED);
  // A deadline that is over on arrival may end the call early, but the call must still end:
  // DEADLINE_EXCEEDED or a reset stream, never silence.
  if (["0m", "1n", "1u"].includes(c.headers["grpc-timeout"] ?? "")) c.expected.add(Code.DEADLINE_EXCEEDED).add(Code.NO_STATUS);
  // The gRPC message framing.
  const b = c.body;
  if (b.length >= 5 && b[0] !== 0) return set("compressed flag", Code.UNIMPLEMENTED);
  if (b.length >= 5 && b.readUInt32BE(1) > AGENT_MAX_REQUEST_BYTES) return set("over the agent limit", Code.RESOURCE_EXHAUSTED);
  if (b.length < 5 || b.length !== 5 + b.readUInt32BE(1)) return set("not exactly one message", Code.INVALID_ARGUMENT);
  const verdict = judgeBody(b.subarray(5));
  if (!verdict.valid) return set(`invalid: ${verdict.why}`, Code.INVALID_ARGUMENT);
  // A valid message in a non-canonical encoding some parsers refuse: refusing it is fine too.
  if (verdict.ambiguous) {
    c.notes.push(NON_CANONICAL);
    c.expected.add(Code.INVALID_ARGUMENT);
  }
  // Past validation, a heartbeat may always be pushed back (busy, database) with UNAVAILABLE.
  if (c.transport === "unregistered") return set("valid, key not registered", Code.UNAUTHENTICATED, Code.UNAVAILABLE);
  if (verdict.machineId === world.machines[c.agent]) {
    c.okAllowed = true;
    return set("valid, own machine", Code.OK, Code.UNAVAILABLE);
  }
  return set("valid, not this key's machine", Code.UNAUTHENTICATED, Code.UNAVAILABLE);
}

// ---------------------------------------------------------------------------
// The client side.

interface Reply {
  code: number;
  message: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  ms: number;
  error?: string;
  /** RST_STREAM code when the stream was reset without any response. */
  refusedWith?: number;
}

function call(session: ClientHttp2Session, c: Pick<Case, "path" | "headers" | "body">): Promise<Reply> {
  const started = Date.now();
  return new Promise((resolve) => {
    let stream;
    try {
      stream = session.request({ ":method": "POST", ":path": c.path, "content-type": "application/grpc", te: "trailers", ...c.headers });
    } catch (e) {
      resolve({ code: -3, message: "", headers: {}, body: Buffer.alloc(0), ms: 0, error: `client refused to send: ${(e as Error).message}` });
      return;
    }
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    let responded = false;
    const chunks: Buffer[] = [];
    let timedOut = false;
    let error: string | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      stream.close(h2.NGHTTP2_CANCEL);
    }, CALL_TIMEOUT_MS);
    stream.on("response", (h) => {
      responded = true;
      headers = h;
    });
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", (e) => (error = e.message));
    stream.on("close", () => {
      clearTimeout(timer);
      const all = { ...headers, ...trailers };
      const status = all["grpc-status"];
      const rst = stream.rstCode;
      resolve({
        ...(!responded && !timedOut && (rst === h2.NGHTTP2_REFUSED_STREAM || rst === h2.NGHTTP2_ENHANCE_YOUR_CALM) && { refusedWith: rst }),
        code: timedOut ? Code.NO_ANSWER : status === undefined ? Code.NO_STATUS : Number(status),
        message: String(all["grpc-message"] ?? ""),
        headers: all,
        body: Buffer.concat(chunks).subarray(5),
        ms: Date.now() - started,
        ...(error !== undefined && { error }),
      });
    });
    stream.end(c.body);
  });
}

function openSession(address: string, tls: ConnectionOptions | undefined): Promise<ClientHttp2Session> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const session = h2Connect(`http://${address}`, {
      createConnection: (): Socket => {
        if (!tls) return netConnect({ host, port });
        return tlsConnect({ host, port, ALPNProtocols: ["h2"], rejectUnauthorized: false, servername: "localhost", ...tls });
      },
    });
    session.on("error", () => {});
    // Like a gRPC client, open streams only once the server's SETTINGS (its stream limit) are known.
    session.once("remoteSettings", () => resolve(session));
    session.once("close", () => reject(new Error("session closed before it connected")));
  });
}

/**
 * A connection the server must refuse in its TLS handshake: the client's side
 * of the handshake completes, then the server's alert ends the connection.
 * Read on a bare TLS socket, because Node's HTTP/2 client session does not
 * notice an alert that arrives right after the handshake.
 */
function tlsRefusal(address: string, tls: ConnectionOptions): Promise<Reply> {
  const [host, port] = splitAddress(address);
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = tlsConnect({ host, port, ALPNProtocols: ["h2"], rejectUnauthorized: false, servername: "localhost", ...tls });
    let error = "closed without an alert";
    socket.on("error", (e) => (error = e.message));
    const timer = setTimeout(() => socket.destroy(), CALL_TIMEOUT_MS);
    socket.resume();
    socket.once("close", () => {
      clearTimeout(timer);
      const alerted = /alert bad certificate/.test(error);
      resolve({ code: alerted ? Code.CONNECT_FAILED : Code.NO_ANSWER, message: "", headers: {}, body: Buffer.alloc(0), ms: Date.now() - started, error });
    });
  });
}

/** Long-lived connections of one identity, replaced when the server closes one. */
class SessionPool {
  #sessions: (Promise<ClientHttp2Session> | undefined)[];
  #next = 0;
  replaced = 0;
  constructor(
    private readonly open: () => Promise<ClientHttp2Session>,
    size: number,
  ) {
    this.#sessions = Array(size).fill(undefined);
  }
  async get(): Promise<ClientHttp2Session> {
    const i = this.#next++ % this.#sessions.length;
    const current = this.#sessions[i];
    if (current) {
      const s = await current.catch(() => undefined);
      if (s && !s.closed && !s.destroyed) return s;
      this.replaced++;
    }
    const fresh = this.open();
    this.#sessions[i] = fresh;
    return fresh;
  }
  async closeAll(): Promise<void> {
    for (const p of this.#sessions) (await p?.catch(() => undefined))?.destroy();
  }
}

/** How long until the server closed a raw socket that writes `bytes` and then waits. */
function rawGarbage(address: string, bytes: Buffer, trickle: boolean): Promise<number> {
  const [host, port] = splitAddress(address);
  const started = Date.now();
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    s.on("error", () => {});
    s.resume();
    let timer: NodeJS.Timeout | undefined;
    s.once("connect", () => {
      if (!trickle) return void s.write(bytes);
      let i = 0;
      timer = setInterval(() => (i < bytes.length && !s.destroyed ? s.write(bytes.subarray(i, ++i)) : undefined), 50);
    });
    const giveUp = setTimeout(() => s.destroy(), HANDSHAKE_MS + 10_000);
    s.once("close", () => {
      clearTimeout(giveUp);
      if (timer) clearInterval(timer);
      resolve(Date.now() - started);
    });
  });
}

function garbageFor(r: Rng): { kind: string; bytes: Buffer; trickle: boolean } {
  const kind = r.pick(["random", "tls record + random", "truncated ClientHello", "HTTP/2 preface + random", "HTTP/2 preface only", "HTTP/1.1", "one byte", "silent", "trickled TLS"]);
  const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  switch (kind) {
    case "random":
      return { kind, bytes: r.bytes(r.range(1, 4096)), trickle: false };
    case "tls record + random":
      return { kind, bytes: Buffer.concat([Buffer.of(0x16, 0x03, 0x01), r.bytes(r.range(2, 2048))]), trickle: false };
    case "truncated ClientHello":
      return { kind, bytes: Buffer.concat([Buffer.of(0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc)]), trickle: false };
    case "HTTP/2 preface + random":
      return { kind, bytes: Buffer.concat([preface, r.bytes(r.range(1, 1024))]), trickle: false };
    case "HTTP/2 preface only":
      return { kind, bytes: preface, trickle: false };
    case "HTTP/1.1":
      return { kind, bytes: Buffer.from("POST /cloud.bmaas.server.api.AgentCallback/Heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n\0\0\0\0\0"), trickle: false };
    case "one byte":
      return { kind, bytes: r.bytes(1), trickle: false };
    case "silent":
      return { kind, bytes: Buffer.alloc(0), trickle: false };
    default:
      return { kind, bytes: Buffer.concat([Buffer.of(0x16, 0x03, 0x01, 0x02, 0x00), r.bytes(512)]), trickle: true };
  }
}

// ---------------------------------------------------------------------------

describe("agent listener fuzz", () => {
  let t: Awaited<ReturnType<typeof startTestServer>>;

  beforeAll(async () => {
    console.log(`agent fuzz: seed ${SEED} (replay with FUZZ_SEED=${SEED}), ${REQUESTS} calls, concurrency ${CONCURRENCY}`);
    t = await startTestServer(testBackends()[0]!, { agentLimits: { handshakeTimeoutMs: HANDSHAKE_MS } });
  });
  afterAll(async () => t?.stop());

  it(`answers ${REQUESTS} random and mutated calls with defined statuses in bounded memory`, { timeout: 180_000 }, async () => {
    const address = t.server.publicAddress;

    // Four registered agents, one machine nobody here holds the key of, one Ed25519 key never registered.
    const agents = await Promise.all(
      [0, 1, 2, 3].map(async () => {
        const key = generateAgentKey();
        const { machineId } = await t.operator.createMachine({});
        await t.operator.registerAgent({ machineId, publicKey: rawEd25519PublicKey(key) });
        return { machineId, cert: await createAgentCertificate(key) };
      }),
    );
    const other = await t.operator.createMachine({});
    await t.operator.registerAgent({ machineId: other.machineId, publicKey: rawEd25519PublicKey(generateAgentKey()) });
    const world: World = { machines: agents.map((a) => a.machineId), otherRegistered: other.machineId };
    // One machine has an installation request waiting: its OK answers carry it.
    await t.operator.setInstallationRequest({ machineId: world.machines[1]!, generation: 7n, rootDevice: "/dev/nvme0n1" });
    const stranger = await createAgentCertificate(generateAgentKey());
    const ecdsa = await ecdsaSelfSigned();

    const pools = agents.map((a) => new SessionPool(() => openSession(address, { cert: a.cert.cert, key: a.cert.key }), 2));
    const unregisteredPool = new SessionPool(() => openSession(address, { cert: stranger.cert, key: stranger.key }), 2);
    await Promise.all(pools.map((p) => p.get()));

    const transportFor = (c: Case): { pool?: SessionPool; tls?: ConnectionOptions; plaintext?: boolean } => {
      switch (c.transport) {
        case "agent":
          return { pool: pools[c.agent]! };
        case "unregistered":
          return { pool: unregisteredPool };
        case "two-certs":
          return { tls: { cert: agents[0]!.cert.cert + stranger.cert, key: agents[0]!.cert.key } };
        case "plaintext":
          return { plaintext: true };
        case "tls-no-cert":
          return { tls: {} };
        default:
          return { tls: { cert: ecdsa.cert, key: ecdsa.key } };
      }
    };

    // Memory, sampled through the run.
    const baseline = await settledMemory();
    let peakRss = baseline.rss;
    let peakHeap = baseline.heapUsed;
    const samples: { at: number; rss: number; heap: number }[] = [];
    const started = Date.now();
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
      samples.push({ at: Date.now() - started, rss: m.rss, heap: m.heapUsed });
    }, 100);

    // Only a summary of each call is kept, so that the test's own memory stays small.
    const outcomes: { transport: TransportKind; code: number; lyingFrame: boolean; nonCanonical: boolean }[] = [];
    const failures: string[] = [];
    const failureClasses = new Map<string, string[]>();
    const fail = (c: Case, reply: Reply, what?: string) => {
      const line = `${what ? `${what}: ` : ""}${describeCase(c, reply)}`;
      failures.push(line);
      const cls = what ?? `${reply.code} ${CODE_NAMES[reply.code] ?? ""} where ${[...c.expected].join("|")} expected (${c.reason})`;
      failureClasses.set(cls, [...(failureClasses.get(cls) ?? []), line]);
    };
    const describeCase = (c: Case, reply: Reply) =>
      `#${c.index} ${c.transport}${c.transport === "agent" ? c.agent : ""} ${c.path.slice(0, 60)} ${JSON.stringify(c.headers).slice(0, 120)} → ${reply.code} "${reply.message.slice(0, 100)}"` +
      `${reply.error ? ` (${reply.error})` : ""}; expected ${[...c.expected].join("|")} (${c.reason}); ${c.notes.join(", ")}; body ${c.body.length} B ${c.body.subarray(0, 96).toString("hex")}`;

    const retried = new Map<string, string[]>();
    const closedAtDeadline: string[] = [];
    // Calls lost with their pooled connection: see the worker.
    const lostWithConnection: string[] = [];
    let nextIndex = 0;
    const worker = async () => {
      for (;;) {
        const index = nextIndex++;
        if (index >= REQUESTS) return;
        const c = makeCase(index, world);
        const how = transportFor(c);
        let reply: Reply;
        let pooled: ClientHttp2Session | undefined;
        let connectedAt = Date.now();
        for (let attempt = 1; ; attempt++) {
          connectedAt = Date.now();
          if (how.pool) {
            const session = await how.pool.get();
            pooled = session;
            reply = await call(session, c);
          } else if (c.transport === "two-certs") {
            reply = await tlsRefusal(address, how.tls!);
          } else {
            let session: ClientHttp2Session | undefined;
            try {
              session = await openSession(address, how.plaintext ? undefined : how.tls);
              reply = await call(session, c);
            } catch (e) {
              reply = { code: Code.CONNECT_FAILED, message: "", headers: {}, body: Buffer.alloc(0), ms: 0, error: `could not connect: ${(e as Error).message}` };
            } finally {
              session?.destroy();
            }
          }
          // A stream the server reset before answering anything was not processed: a gRPC
          // client retries REFUSED_STREAM transparently, and so do we (counted, see the table).
          if (reply.refusedWith === undefined || attempt >= 5) break;
          const name = reply.refusedWith === h2.NGHTTP2_REFUSED_STREAM ? "REFUSED_STREAM" : "ENHANCE_YOUR_CALM";
          retried.set(name, [...(retried.get(name) ?? []), `#${c.index} ${c.transport}`]);
          await new Promise((res) => setTimeout(res, 10 * attempt));
        }
        outcomes.push({ transport: c.transport, code: reply.code, lyingFrame: c.lyingFrame, nonCanonical: c.notes.includes(NON_CANONICAL) });
        // An unauthenticated connection lives for the handshake deadline at most, from accept; on a
        // loaded machine a call may start too late to be answered within it.
        const unauthenticated = c.transport === "plaintext" || c.transport === "tls-no-cert" || c.transport === "ecdsa" || c.transport === "two-certs";
        const outlived = unauthenticated && (reply.code === Code.NO_STATUS || reply.code === Code.CONNECT_FAILED) && Date.now() - connectedAt >= HANDSHAKE_MS * 0.9;
        if (outlived) closedAtDeadline.push(`#${c.index}`);
        // A pooled connection carries many calls at once. When it ends, every
        // call on it ends without a status, whatever it sent: allowed,
        // counted, bounded below. (Seen once: two connections ended, 17 calls
        // lost in 10,000, in a CI run on a slow, loaded machine; the same
        // seed alone and under three CPU hogs lost none, so the cause —
        // perhaps the per-session memory bound of agent-listener.ts — was
        // not found.)
        const lost = reply.code === Code.NO_STATUS && pooled !== undefined && (pooled.closed || pooled.destroyed);
        if (lost) lostWithConnection.push(`#${c.index}`);
        const allowed = c.expected.has(reply.code) || (reply.code === Code.NO_STATUS && c.lyingFrame) || outlived || lost;
        if (!allowed) fail(c, reply);
        else if (reply.code === Code.OK) {
          if (!c.okAllowed) fail(c, reply, "OK for a request that must not succeed");
          try {
            const res = fromBinary(HeartbeatResponseSchema, reply.body);
            if (res.installationRequest && !(c.agent === 1 && res.installationRequest.generation === 7n)) fail(c, reply, "installation request of another machine");
          } catch (e) {
            fail(c, reply, `OK with an undecodable HeartbeatResponse (${(e as Error).message})`);
          }
        }
      }
    };

    // Raw connections that are not TLS or HTTP/2, alongside the calls.
    const rawResults: { kind: string; ms: number }[] = [];
    let callsDone = false;
    const rawLoop = async () => {
      const r = new Rng(hash32(SEED, 0xfffffff));
      const inFlight = new Set<Promise<void>>();
      for (let n = 0; n < RAW_SOCKETS; n++) {
        const g = garbageFor(r);
        const p: Promise<void> = rawGarbage(address, g.bytes, g.trickle).then((ms) => {
          rawResults.push({ kind: g.kind, ms });
          inFlight.delete(p);
        });
        inFlight.add(p);
        if (inFlight.size >= 8) await Promise.race(inFlight);
        await new Promise((res) => setTimeout(res, callsDone ? 0 : r.range(50, 300)));
      }
      await Promise.all(inFlight);
    };

    const raw = rawLoop();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    callsDone = true;
    await raw;
    const callsMs = Date.now() - started;
    clearInterval(sampler);
    const endMemory = await settledMemory();

    // The table.
    const byCode = new Map<number, number>();
    const byTransport = new Map<string, Map<number, number>>();
    for (const { transport, code } of outcomes) {
      byCode.set(code, (byCode.get(code) ?? 0) + 1);
      const m = byTransport.get(transport) ?? new Map<number, number>();
      m.set(code, (m.get(code) ?? 0) + 1);
      byTransport.set(transport, m);
    }
    const codes = [...byCode.keys()].sort((a, b) => a - b);
    const lines = [
      `agent fuzz: seed ${SEED}, ${outcomes.length} calls in ${(callsMs / 1000).toFixed(1)} s (${Math.round(outcomes.length / (callsMs / 1000))}/s)`,
      `${"status".padEnd(28)}${"total".padStart(7)}${[...byTransport.keys()].map((k) => k.padStart(14)).join("")}`,
      ...codes.map(
        (code) =>
          `${`${code} ${CODE_NAMES[code] ?? ""}`.padEnd(28)}${String(byCode.get(code)).padStart(7)}${[...byTransport.values()].map((m) => String(m.get(code) ?? 0).padStart(14)).join("")}`,
      ),
      `lying frames: ${outcomes.filter((o) => o.lyingFrame).length}, non-canonical encodings: ${outcomes.filter((o) => o.nonCanonical).length}, agent connections replaced: ${pools.reduce((s, p) => s + p.replaced, 0)}`,
      `unauthenticated connections closed by the handshake deadline before their call was answered: ${closedAtDeadline.length}`,
      `calls lost with their pooled connection: ${lostWithConnection.length}`,
      `streams reset before any answer and retried: ${[...retried].map(([k, v]) => `${k} ${v.length} (${v.slice(0, 5).join(", ")})`).join("; ") || "none"}`,
      `raw sockets: ${rawResults.length}, closed after ${Math.min(...rawResults.map((x) => x.ms))}–${Math.max(...rawResults.map((x) => x.ms))} ms (handshake deadline ${HANDSHAKE_MS} ms)`,
      `memory (MB): rss ${(baseline.rss / MB).toFixed(0)} → peak ${(peakRss / MB).toFixed(0)} → after GC ${(endMemory.rss / MB).toFixed(0)} (peak growth ${((peakRss - baseline.rss) / MB).toFixed(0)}, bound ${RSS_GROWTH_BOUND / MB}); ` +
        `heap used ${(baseline.heapUsed / MB).toFixed(0)} → peak ${(peakHeap / MB).toFixed(0)} → after GC ${(endMemory.heapUsed / MB).toFixed(0)} (retained ${((endMemory.heapUsed - baseline.heapUsed) / MB).toFixed(1)}, bound ${HEAP_RETAINED_BOUND / MB}); ${samples.length} samples`,
      `memory by quarter (rss/heap MB): ${[0.25, 0.5, 0.75, 1]
        .map((q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length) - 1)])
        .filter(Boolean)
        .map((s) => `${(s!.rss / MB).toFixed(0)}/${(s!.heap / MB).toFixed(0)}`)
        .join(", ")}`,
    ];
    console.log(lines.join("\n"));
    if (failures.length > 0) {
      console.log(
        `${failures.length} calls failed, by kind (up to 3 examples each):\n` +
          [...failureClasses].map(([cls, lines]) => `- ${lines.length} × ${cls}\n${lines.slice(0, 3).map((l) => `    ${l}`).join("\n")}`).join("\n"),
      );
    }

    // Every connection that is not TLS or HTTP/2 is closed within the handshake deadline (plus scheduling slack).
    const lateRaw = rawResults.filter((x) => x.ms > HANDSHAKE_MS + 2_500);
    // The server still serves a well-behaved agent correctly.
    const fresh = await newAgent(address, t.pki);
    const { machineId } = await t.operator.createMachine({});
    await t.operator.registerAgent({ machineId, publicKey: fresh.publicKey });
    await t.operator.setInstallationRequest({ machineId, generation: 3n, rootDevice: "/dev/sda" });
    const answer = await fresh.client.heartbeat({ machineId, hardwareReport: { report: { manufacturer: "ACME", cpu: [{ cores: 8 }] }, warning: ["after the fuzz"] } });
    fresh.client.close();
    const m = (await t.operator.getMachine({ machineId })).machine!;

    // Closing our side leaves nothing open on the server.
    await Promise.all([...pools, unregisteredPool].map((p) => p.closeAll()));
    const closeBy = Date.now() + 5_000;
    while (t.server.agentConnections.open > 0 && Date.now() < closeBy) await new Promise((r) => setTimeout(r, 50));
    console.log(`total ${((Date.now() - started) / 1000).toFixed(1)} s; server connections after the run: ${JSON.stringify(t.server.agentConnections)}`);

    expect(outcomes.length).toBe(REQUESTS);
    // Lost connections stay rare: a server that dropped connections as a habit fails here.
    expect(lostWithConnection.length, "calls lost with their pooled connection").toBeLessThanOrEqual(REQUESTS / 100);
    expect(byCode.get(Code.INTERNAL) ?? 0, "INTERNAL means a server bug").toBe(0);
    expect([...failureClasses].map(([cls, lines]) => `${lines.length} × ${cls}`), "calls answered outside their allowed statuses").toEqual([]);
    expect(lateRaw, "raw connections the server did not close within the handshake deadline").toEqual([]);
    expect(rawResults.length).toBe(RAW_SOCKETS);
    expect(peakRss - baseline.rss, "RSS growth during the fuzz run").toBeLessThan(RSS_GROWTH_BOUND);
    expect(endMemory.heapUsed - baseline.heapUsed, "heap retained after the run").toBeLessThan(HEAP_RETAINED_BOUND);
    expect(byCode.get(Code.OK) ?? 0, "some calls must succeed").toBeGreaterThan(REQUESTS / 10);
    expect(answer.installationRequest?.generation).toBe(3n);
    expect(m.agentHeartbeat).toBeDefined();
    expect(m.hardwareReport?.report?.manufacturer).toBe("ACME");
    expect(m.hardwareReport?.warnings).toEqual(["after the fuzz"]);
    expect(t.server.agentConnections.open).toBe(0);
    expect(t.server.heartbeats.inflight, "heartbeats still queued or in the database").toBe(0);
    expect(t.server.agentConnections.handshaking).toBe(0);
  });

  // The fuzz run opens a few thousand short connections; this looks at them
  // alone: connections that come and go must not leave memory behind.
  it("keeps nothing of connections that have closed", { timeout: 60_000 }, async () => {
    const address = t.server.publicAddress;
    const { machineId } = await t.operator.createMachine({});
    const key = generateAgentKey();
    await t.operator.registerAgent({ machineId, publicKey: rawEd25519PublicKey(key) });
    const agent = await createAgentCertificate(key);
    const request = { path: HEARTBEAT_PATH, headers: {}, body: frame(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { machineId }))) };
    const kinds: [string, ConnectionOptions | undefined][] = [
      ["plaintext", undefined],
      ["plaintext", undefined],
      ["TLS without certificate", {}],
      ["registered agent", { cert: agent.cert, key: agent.key }],
    ];
    const codes = new Map<string, number>();
    const churn = async (n: number) => {
      let i = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (i < n) {
            const [kind, tls] = kinds[i++ % kinds.length]!;
            const session = await openSession(address, tls);
            const reply = await call(session, request);
            session.destroy();
            codes.set(`${kind} → ${reply.code}`, (codes.get(`${kind} → ${reply.code}`) ?? 0) + 1);
          }
        }),
      );
    };
    const quiet = async () => {
      const until = Date.now() + 5_000;
      while (t.server.agentConnections.open > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      // The server's own timers for a refused connection (answer, then close) run out within 1.5 s.
      await new Promise((r) => setTimeout(r, 1_500));
      return settledMemory();
    };
    await churn(200);
    const before = await quiet();
    const CONNECTIONS = 1_000;
    const started = Date.now();
    await churn(CONNECTIONS);
    const after = await quiet();
    const perConnection = (after.heapUsed - before.heapUsed) / CONNECTIONS;
    console.log(
      `${CONNECTIONS} connections opened, used for one call and closed in ${((Date.now() - started) / 1000).toFixed(1)} s (${JSON.stringify(Object.fromEntries(codes))}): ` +
        `heap ${(before.heapUsed / MB).toFixed(1)} → ${(after.heapUsed / MB).toFixed(1)} MB, ${Math.round(perConnection)} bytes retained per closed connection; rss ${(before.rss / MB).toFixed(0)} → ${(after.rss / MB).toFixed(0)} MB`,
    );
    expect(t.server.agentConnections.open).toBe(0);
    // A closed connection may leave nothing behind but counters: at 1,000 connections a second,
    // 1 KB each held for 10 minutes would already be 600 MB.
    expect(perConnection, "heap bytes retained per closed connection").toBeLessThan(1024);
  });
});
