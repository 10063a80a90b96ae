import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { validate as isUuid } from "uuid";
import type { Bmdb, ListFilter } from "../bmdb/index.js";
import { HeartbeatState, OperatorService } from "../gen/bmaas/operator/v1/operator_pb.js";
import { OSInstallationRequestSchema } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { ed25519KeyProblem } from "../lib/ed25519-key.js";
import type { ServiceHandlers } from "../lib/grpc-adapter.js";
import { heartbeatStateName } from "../lib/heartbeat-states.js";
import type { Decision } from "./admission-metrics.js";
import { admissionHandlers, operatorName } from "./operator-admission.js";
import { fleetStatsMessage, machineEventMessage, machineMessage, machineSummaryMessage } from "./operator-messages.js";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.js";
import { RpcError } from "./rpc-error.js";
import { watchMachines, type WatchOptions } from "./watch-machines.js";

export interface OperatorDeps {
  bmdb: Bmdb;
  watch: WatchOptions;
  /** Aborted when the server stops, which ends every watch stream. */
  stopping: AbortSignal;
  /** Told of admission decisions (for metrics). */
  onDecision?: (d: Decision, n?: number) => void;
}

export function machineIdArg(id: string): string {
  if (!isUuid(id)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `machine_id "${id}" is not a UUID`);
  return id.toLowerCase();
}

/** Rejects anything but a valid Ed25519 point, so typos fail here, not at the agent. */
export function publicKeyArg(key: Uint8Array): Uint8Array {
  const problem = ed25519KeyProblem(key);
  if (problem) throw new RpcError(grpc.status.INVALID_ARGUMENT, problem);
  return key;
}

export function operatorHandlers(deps: OperatorDeps): ServiceHandlers<(typeof OperatorService)["method"]> {
  const { bmdb } = deps;
  return {
    ...admissionHandlers(bmdb, { machineIdArg, onDecision: deps.onDecision ?? (() => {}) }),
    async listMachines(req) {
      const size = pageSize(req.pageSize, 100, 1000);
      const after = decodePageToken(req.pageToken, ["after"])?.after;
      if (after !== undefined && !isUuid(after)) throw new RpcError(grpc.status.INVALID_ARGUMENT, "invalid page_token");
      if (req.search.length > 256) throw new RpcError(grpc.status.INVALID_ARGUMENT, "search must be at most 256 characters");
      const filter: ListFilter = {
        ...(req.heartbeatState !== HeartbeatState.UNSPECIFIED && { heartbeat: heartbeatStateName(req.heartbeatState) }),
        ...(req.needsRecovery !== undefined && { needsRecovery: req.needsRecovery }),
        ...(req.provider !== undefined && { provider: req.provider }),
        ...(req.hasHardwareReport !== undefined && { hasHardwareReport: req.hasHardwareReport }),
        ...(req.pendingInstallation !== undefined && { pendingInstallation: req.pendingInstallation }),
        ...(req.search.trim() && { search: req.search }),
      };
      if (req.heartbeatState !== HeartbeatState.UNSPECIFIED && !filter.heartbeat) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, `unknown heartbeat_state ${req.heartbeatState}`);
      }
      const page = await bmdb.listMachines(filter, size, after);
      return {
        machines: page.machines.map(machineSummaryMessage),
        nextPageToken: page.nextAfter ? encodePageToken({ after: page.nextAfter }) : "",
      };
    },

    async revokeAgent(req, call) {
      return { keyFingerprint: await bmdb.revokeAgent(machineIdArg(req.machineId), operatorName(call)) };
    },

    async deleteMachine(req) {
      await bmdb.deleteMachine(machineIdArg(req.machineId));
      return {};
    },

    async updateProvider(req) {
      await bmdb.updateProvider(machineIdArg(req.machineId), {
        ...(req.status !== undefined && { status: req.status }),
        ...(req.address !== undefined && { address: req.address }),
        ...(req.location !== undefined && { location: req.location }),
      });
      return {};
    },

    async getMachineHistory(req) {
      const machineId = machineIdArg(req.machineId);
      const size = pageSize(req.pageSize, 50, 1000);
      const cursor = decodePageToken(req.pageToken, ["t", "e"]);
      const before = cursor ? { occurredAt: new Date(cursor.t!), eventId: cursor.e! } : undefined;
      // A forged date outside what the database can compare is the caller's fault, not an outage.
      const year = before?.occurredAt.getUTCFullYear() ?? 2000;
      if (before && (Number.isNaN(year) || year < 1970 || year > 9999 || !isUuid(before.eventId))) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, "invalid page_token");
      }
      const page = await bmdb.getHistory(machineId, size, before);
      return {
        events: page.events.map(machineEventMessage),
        nextPageToken: page.next ? encodePageToken({ t: page.next.occurredAt.toISOString(), e: page.next.eventId }) : "",
      };
    },

    async watchMachines(req, call, send) {
      const machineId = req.machineId ? machineIdArg(req.machineId) : undefined;
      await watchMachines(bmdb, machineId, call, send, deps.watch, deps.stopping);
    },

    async fleetStats() {
      return fleetStatsMessage(await bmdb.fleetStats());
    },

    async createMachine(req) {
      if ((req.provider === "") !== (req.providerId === "")) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, "provider and provider_id must be given together");
      }
      const machineId = await bmdb.createMachine(
        req.provider ? { provider: { provider: req.provider, providerId: req.providerId } } : {},
      );
      return { machineId };
    },

    async registerAgent(req, call) {
      const machineId = machineIdArg(req.machineId);
      const key = publicKeyArg(req.publicKey);
      const r = await bmdb.registerAgent(machineId, key, operatorName(call));
      deps.onDecision?.({ decision: "preauthorized", via: "operator" });
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
