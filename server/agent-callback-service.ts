import * as grpc from "@grpc/grpc-js";
import { fromBinary, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { validate as isUuid } from "uuid";
import type { Bmdb, HeartbeatInput } from "../bmdb/index.js";
import {
  AgentCallback,
  AgentHardwareReportSchema,
  HeartbeatResponseSchema,
  OSInstallationRequestSchema,
  type HeartbeatRequest,
} from "../gen/cloud/bmaas/server/api/agent_pb.js";
import type { ServiceHandlers } from "../lib/grpc-adapter.js";
import { rawRequestBytes } from "../lib/grpc-adapter.js";
import type { PeerRegistry } from "./peer-identity.js";
import { RpcError } from "./rpc-error.js";

// HeartbeatRequest field numbers whose bytes we keep exactly as sent.
const HARDWARE_REPORT_FIELD = 2;
const INSTALLATION_REPORT_FIELD = 3;

/**
 * The bytes of one length-delimited field of a serialized message. Repeated
 * occurrences are concatenated, which is how protobuf merges a message field
 * sent twice, so the result decodes to what the parser saw.
 */
export function rawField(message: Uint8Array, fieldNo: number): Uint8Array | undefined {
  const reader = new BinaryReader(message);
  const parts: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === fieldNo && wireType === WireType.LengthDelimited) parts.push(reader.bytes());
    else reader.skip(wireType, no);
  }
  if (parts.length <= 1) return parts[0];
  return Buffer.concat(parts);
}

export interface AgentCallbackDeps {
  bmdb: Bmdb;
  peers: PeerRegistry;
  logger: Logger;
  /** Sent to agents as suggested_interval when set, so operators can pace the fleet. */
  suggestedIntervalMs?: number;
}

// One answer for every authentication failure after the transport check, so
// that a caller cannot tell an unknown machine from a wrong key.
const NOT_REGISTERED = "machine unknown or public key not registered for it";

type Response = MessageInitShape<typeof HeartbeatResponseSchema>;

/** Heartbeat, shared by both AgentCallback service names. */
export function agentCallbackHandlers(deps: AgentCallbackDeps): ServiceHandlers<(typeof AgentCallback)["method"]> {
  const { bmdb, peers, logger } = deps;
  const pace = deps.suggestedIntervalMs ? { suggestedInterval: durationFromMs(deps.suggestedIntervalMs) } : {};

  const heartbeat = async (req: HeartbeatRequest, call: grpc.ServerUnaryCall<HeartbeatRequest, unknown>): Promise<Response> => {
    const peer = peers.lookup(call.getPeer());
    if (peer.kind !== "agent") {
      logger.warn({ peer: call.getPeer(), machineId: req.machineId, reason: peer.reason }, "agent refused: transport");
      throw new RpcError(grpc.status.UNAUTHENTICATED, "a TLS connection with exactly one Ed25519 client certificate is required");
    }
    if (!isUuid(req.machineId)) throw new RpcError(grpc.status.INVALID_ARGUMENT, "machine_id must be a UUID");
    const machineId = req.machineId.toLowerCase();

    const raw = rawRequestBytes(req) ?? new Uint8Array();
    const input: HeartbeatInput = { machineId, publicKey: peer.publicKey };

    const ir = req.installationReport;
    if (ir) {
      const result = ir.result;
      if (result.case === undefined) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, "installation_report must have success or error set");
      }
      input.installationReport = {
        generation: ir.generation,
        result: result.case,
        ...(result.case === "error" ? { errorMessage: result.value.error } : {}),
        raw: rawField(raw, INSTALLATION_REPORT_FIELD) ?? new Uint8Array(),
      };
    }

    if (req.hardwareReport) {
      const hwRaw = rawField(raw, HARDWARE_REPORT_FIELD);
      // An empty report carries nothing and must not erase a stored one.
      if (hwRaw && hwRaw.length > 0) {
        input.hardwareReport = { raw: hwRaw, json: toJson(AgentHardwareReportSchema, req.hardwareReport) };
      }
    }

    const result = await bmdb.heartbeat(input);
    if (!result.authenticated) {
      logger.warn({ peer: call.getPeer(), machineId, keyFingerprint: peer.keyFingerprint }, "agent refused: not registered");
      throw new RpcError(grpc.status.UNAUTHENTICATED, NOT_REGISTERED);
    }
    if (!result.installationRequest) return pace;
    return { ...pace, installationRequest: fromBinary(OSInstallationRequestSchema, result.installationRequest) };
  };

  return { heartbeat };
}
