import * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { validate as isUuid } from "uuid";
import type { AgentRequestView, Bmdb, HardwareMatch as DbHardwareMatch, ImportEntry, ImportOutcome as DbImportOutcome, RequestFilter } from "../bmdb/index.js";
import {
  AdmissionState,
  HardwareMatch,
  ImportOutcome,
  type AgentRequestSchema,
  type OperatorService,
} from "../gen/bmaas/operator/v1/operator_pb.js";
import { ed25519KeyProblem } from "../lib/ed25519-key.js";
import type { ServiceHandlers } from "../lib/grpc-adapter.js";
import type { Decision } from "./admission-metrics.js";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.js";
import { RpcError } from "./rpc-error.js";

// The admission part of the operator API: pending and rejected keys, the
// operator's decisions on them, and bulk import.

type Methods = (typeof OperatorService)["method"];
type AdmissionMethods = Pick<Methods, "listAgentRequests" | "acceptAgent" | "rejectAgent" | "importMachines">;

/** Entries per ImportMachines request: one transaction each, ~1 s on PostgreSQL. */
export const MAX_IMPORT_ENTRIES = 5000;
const MAX_PROVIDER_CHARS = 256;

export const ADMISSION_STATES: Record<"preauthorized" | "pending" | "accepted" | "rejected", AdmissionState> = {
  preauthorized: AdmissionState.PREAUTHORIZED,
  pending: AdmissionState.PENDING,
  accepted: AdmissionState.ACCEPTED,
  rejected: AdmissionState.REJECTED,
};

const HARDWARE_MATCHES: Record<DbHardwareMatch, HardwareMatch> = {
  identical: HardwareMatch.IDENTICAL,
  same_identity: HardwareMatch.SAME_IDENTITY,
  different: HardwareMatch.DIFFERENT,
  no_report: HardwareMatch.NO_REPORT,
  no_accepted_report: HardwareMatch.NO_ACCEPTED_REPORT,
};

const IMPORT_OUTCOMES: Record<DbImportOutcome, ImportOutcome> = {
  created: ImportOutcome.CREATED,
  key_set: ImportOutcome.KEY_SET,
  unchanged: ImportOutcome.UNCHANGED,
  key_conflict: ImportOutcome.KEY_CONFLICT,
};

export function agentRequestMessage(r: AgentRequestView): MessageInitShape<typeof AgentRequestSchema> {
  return {
    machineId: r.machineId,
    keyFingerprint: r.keyFingerprint,
    publicKey: r.publicKey,
    state: ADMISSION_STATES[r.state],
    firstSeenAt: timestampFromDate(r.firstSeenAt),
    lastSeenAt: timestampFromDate(r.lastSeenAt),
    attempts: r.attempts,
    currentKeyFingerprint: r.currentKeyFingerprint ?? "",
    hardwareMatch: HARDWARE_MATCHES[r.hardwareMatch],
    provider: r.provider ?? "",
    providerId: r.providerId ?? "",
    ...(r.decidedAt && { decidedAt: timestampFromDate(r.decidedAt) }),
    decidedBy: r.decidedBy ?? "",
    reason: r.reason ?? "",
  };
}

/**
 * Who is deciding: the common name of the operator's client certificate
 * (the operator listener is mTLS), else "operator".
 */
export function operatorName(call: { getAuthContext?: () => { sslPeerCertificate?: { subject?: { CN?: string | string[] } } } }): string {
  const cn = call.getAuthContext?.()?.sslPeerCertificate?.subject?.CN;
  const name = Array.isArray(cn) ? cn[0] : cn;
  return name ? `CN=${name}` : "operator";
}

/** A key fingerprint or a unique prefix of it: 8 to 64 hex digits, optionally "sha256:" first. */
function fingerprintArg(text: string): string {
  const t = text.trim().toLowerCase().replace(/^sha256:/, "");
  if (!/^[0-9a-f]{8,64}$/.test(t)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `key_fingerprint "${text}" is not 8 to 64 hex digits of a SHA-256 key fingerprint`);
  return t;
}

function textField(what: string, text: string, index: number): string {
  if (text === "" || text.length > MAX_PROVIDER_CHARS || text.includes("\0")) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, `entry ${index + 1}: ${what} must be 1 to ${MAX_PROVIDER_CHARS} characters without NUL`);
  }
  return text;
}

export function admissionHandlers(
  bmdb: Bmdb,
  args: { machineIdArg: (id: string) => string; onDecision: (d: Decision, n?: number) => void },
): ServiceHandlers<AdmissionMethods> {
  return {
    async listAgentRequests(req) {
      const size = pageSize(req.pageSize, 100, 1000);
      const cursor = decodePageToken(req.pageToken, ["m", "f"]);
      if (cursor && (!isUuid(cursor.m!) || !/^[0-9a-f]{64}$/.test(cursor.f!))) throw new RpcError(grpc.status.INVALID_ARGUMENT, "invalid page_token");
      if (![AdmissionState.UNSPECIFIED, AdmissionState.PENDING, AdmissionState.REJECTED].includes(req.state)) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, "state must be PENDING, REJECTED or unspecified");
      }
      const filter: RequestFilter = {
        ...(req.state === AdmissionState.PENDING && { state: "pending" }),
        ...(req.state === AdmissionState.REJECTED && { state: "rejected" }),
        ...(req.machineId && { machineId: args.machineIdArg(req.machineId) }),
        ...(req.provider !== undefined && { provider: req.provider }),
        ...(req.rekeyed !== undefined && { rekeyed: req.rekeyed }),
      };
      const page = await bmdb.listAgentRequests(filter, size, cursor ? { machineId: cursor.m!, keyFingerprint: cursor.f! } : undefined);
      return {
        requests: page.requests.map(agentRequestMessage),
        nextPageToken: page.next ? encodePageToken({ m: page.next.machineId, f: page.next.keyFingerprint }) : "",
      };
    },

    async acceptAgent(req, call) {
      const r = await bmdb.acceptAgent(args.machineIdArg(req.machineId), fingerprintArg(req.keyFingerprint), operatorName(call));
      if (!r.alreadyAccepted) args.onDecision({ decision: "accepted", via: "operator" });
      return {
        keyFingerprint: r.keyFingerprint,
        previousKeyFingerprint: r.previousKeyFingerprint ?? "",
        hardwareMatch: HARDWARE_MATCHES[r.hardwareMatch],
        alreadyAccepted: r.alreadyAccepted,
      };
    },

    async rejectAgent(req, call) {
      if (req.reason.length > 1000 || req.reason.includes("\0")) throw new RpcError(grpc.status.INVALID_ARGUMENT, "reason must be at most 1000 characters without NUL");
      const r = await bmdb.rejectAgent(args.machineIdArg(req.machineId), fingerprintArg(req.keyFingerprint), operatorName(call), req.reason || null);
      if (!r.alreadyRejected) args.onDecision({ decision: "rejected", via: "operator" });
      return { keyFingerprint: r.keyFingerprint, alreadyRejected: r.alreadyRejected };
    },

    async importMachines(req, call) {
      if (req.entries.length > MAX_IMPORT_ENTRIES) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, `at most ${MAX_IMPORT_ENTRIES} entries per request, got ${req.entries.length}`);
      }
      // Every entry is checked before anything is written.
      const seen = new Map<string, number>();
      const entries: ImportEntry[] = req.entries.map((e, i) => {
        const provider = textField("provider", e.provider, i);
        const providerId = textField("provider_id", e.providerId, i);
        const id = JSON.stringify([provider, providerId]);
        const first = seen.get(id);
        if (first !== undefined) throw new RpcError(grpc.status.INVALID_ARGUMENT, `entry ${i + 1}: same provider and provider_id as entry ${first + 1}`);
        seen.set(id, i);
        let publicKey: Uint8Array | undefined;
        if (e.publicKey.length > 0) {
          // Without the per-key scalar multiplication (lib/ed25519-key.ts): bulk scale.
          const problem = ed25519KeyProblem(e.publicKey, { torsionCheck: false });
          if (problem) throw new RpcError(grpc.status.INVALID_ARGUMENT, `entry ${i + 1}: ${problem}`);
          publicKey = e.publicKey;
        }
        return { provider, providerId, publicKey };
      });
      const results = await bmdb.importMachines(entries, `import by ${operatorName(call)}`);
      const keyed = results.filter((r, i) => r.outcome === "key_set" || (r.outcome === "created" && entries[i]!.publicKey)).length;
      args.onDecision({ decision: "preauthorized", via: "import" }, keyed);
      return { results: results.map((r) => ({ outcome: IMPORT_OUTCOMES[r.outcome], machineId: r.machineId })) };
    },
  };
}
