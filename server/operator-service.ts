import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import * as ed from "@noble/ed25519";
import { validate as isUuid } from "uuid";
import type { Bmdb, MachineView } from "../bmdb/index.js";
import { OperatorService, type MachineSchema } from "../gen/bmaas/operator/v1/operator_pb.js";
import {
  AgentHardwareReportSchema,
  OSInstallationRequestSchema,
} from "../gen/cloud/bmaas/server/api/agent_pb.js";
import type { ServiceHandlers } from "./grpc-adapter.js";
import { RpcError } from "./rpc-error.js";

export interface OperatorDeps {
  bmdb: Bmdb;
}

function machineIdArg(id: string): string {
  if (!isUuid(id)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `machine_id "${id}" is not a UUID`);
  return id.toLowerCase();
}

/** Rejects anything but a valid Ed25519 point, so typos fail here, not at the agent. */
function publicKeyArg(key: Uint8Array): Uint8Array {
  if (key.length !== 32) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, `public_key must be 32 bytes (raw Ed25519), got ${key.length}`);
  }
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(key);
  } catch {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, "public_key is not a valid Ed25519 public key");
  }
  // Small-order points (the all-zero key among them) verify forged signatures;
  // no honest key generator produces one.
  if (point.isSmallOrder() || !point.isTorsionFree()) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, "public_key is not a valid Ed25519 public key (small order)");
  }
  return key;
}

/** The operator's view of a machine, decoding what bmdb keeps raw. */
export function machineMessage(m: MachineView, now: Date): MessageInitShape<typeof MachineSchema> {
  const hw = m.hardwareReport ? fromBinary(AgentHardwareReportSchema, m.hardwareReport.raw) : undefined;
  return {
    machineId: m.machineId,
    createdAt: timestampFromDate(m.createdAt),
    ...(m.provided && {
      provided: {
        provider: m.provided.provider,
        providerId: m.provided.providerId,
        status: m.provided.status ?? "",
        address: m.provided.address ?? "",
        location: m.provided.location ?? "",
      },
    }),
    ...(m.agentStarted && {
      agentStarted: {
        startedAt: timestampFromDate(m.agentStarted.startedAt),
        publicKey: m.agentStarted.publicKey,
        keyFingerprint: m.agentStarted.keyFingerprint,
      },
    }),
    ...(m.agentHeartbeat && {
      agentHeartbeat: {
        lastHeartbeatAt: timestampFromDate(m.agentHeartbeat.lastHeartbeatAt),
        age: durationFromMs(Math.max(0, now.getTime() - m.agentHeartbeat.lastHeartbeatAt.getTime())),
      },
    }),
    ...(m.hardwareReport &&
      hw && {
        hardwareReport: {
          reportedAt: timestampFromDate(m.hardwareReport.reportedAt),
          ...(hw.report && { report: hw.report }),
          warnings: hw.warning,
          rawSizeBytes: BigInt(m.hardwareReport.raw.length),
        },
      }),
    ...(m.installationRequest && {
      installationRequest: {
        generation: m.installationRequest.generation,
        requestedAt: timestampFromDate(m.installationRequest.requestedAt),
        request: fromBinary(OSInstallationRequestSchema, m.installationRequest.raw),
      },
    }),
    ...(m.installationReport && {
      installationReport: {
        generation: m.installationReport.generation,
        reportedAt: timestampFromDate(m.installationReport.reportedAt),
        success: m.installationReport.result === "success",
        error: m.installationReport.errorMessage ?? "",
      },
    }),
    installationPending: m.installationPending,
  };
}

export function operatorHandlers(deps: OperatorDeps): ServiceHandlers<(typeof OperatorService)["method"]> {
  const { bmdb } = deps;
  return {
    async createMachine(req) {
      if ((req.provider === "") !== (req.providerId === "")) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, "provider and provider_id must be given together");
      }
      const machineId = await bmdb.createMachine(
        req.provider ? { provider: { provider: req.provider, providerId: req.providerId } } : {},
      );
      return { machineId };
    },

    async registerAgent(req) {
      const machineId = machineIdArg(req.machineId);
      const key = publicKeyArg(req.publicKey);
      const r = await bmdb.registerAgent(machineId, key);
      return { keyFingerprint: r.keyFingerprint, startedAt: timestampFromDate(r.startedAt) };
    },

    async getMachine(req) {
      const m = await bmdb.getMachine(machineIdArg(req.machineId));
      return { machine: machineMessage(m, bmdb.now()) };
    },

    async setInstallationRequest(req) {
      const machineId = machineIdArg(req.machineId);
      if (req.generation <= 0n) throw new RpcError(grpc.status.INVALID_ARGUMENT, "generation must be positive");
      if (req.rootDevice === "") throw new RpcError(grpc.status.INVALID_ARGUMENT, "root_device is required");
      const request = create(OSInstallationRequestSchema, {
        generation: req.generation,
        type: {
          case: "metropolis",
          value: {
            rootDevice: req.rootDevice,
            nodeParameters: req.nodeParameters,
            ...(req.osImage && { osImage: req.osImage }),
          },
        },
      });
      await bmdb.setInstallationRequest(machineId, req.generation, toBinary(OSInstallationRequestSchema, request));
      return {};
    },
  };
}
