import type { MessageInitShape } from "@bufbuild/protobuf";
import { fromBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { FleetStats, MachineEvent, MachineSummary, MachineView } from "../bmdb/index.js";
import type { FleetStatsResponseSchema, MachineEventSchema, MachineSchema, MachineSummarySchema } from "../gen/bmaas/operator/v1/operator_pb.js";
import { ADMISSION_STATES, agentRequestMessage } from "./operator-admission.js";
import { AgentHardwareReportSchema, OSInstallationRequestSchema } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { heartbeatStateOf } from "../lib/heartbeat-states.js";

// Conversions from bmdb's domain values to operator API messages.

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
        admission: ADMISSION_STATES[m.agentStarted.admission],
        admittedBy: m.agentStarted.admittedBy ?? "",
      },
    }),
    agentRequests: m.agentRequests.map(agentRequestMessage),
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

export function machineSummaryMessage(m: MachineSummary): MessageInitShape<typeof MachineSummarySchema> {
  return {
    machineId: m.machineId,
    createdAt: timestampFromDate(m.createdAt),
    provider: m.provider ?? "",
    providerId: m.providerId ?? "",
    location: m.location ?? "",
    ...(m.agentStartedAt && { agentStartedAt: timestampFromDate(m.agentStartedAt) }),
    ...(m.lastHeartbeatAt && { lastHeartbeatAt: timestampFromDate(m.lastHeartbeatAt) }),
    heartbeatState: heartbeatStateOf(m.heartbeat),
    needsRecovery: m.needsRecovery,
    hasHardwareReport: m.hasHardwareReport,
    installationPending: m.installationPending,
  };
}

export function machineEventMessage(e: MachineEvent): MessageInitShape<typeof MachineEventSchema> {
  return {
    eventId: e.eventId,
    machineId: e.machineId,
    occurredAt: timestampFromDate(e.occurredAt),
    kind: e.event,
    detailsJson: JSON.stringify(e.details),
  };
}

export function fleetStatsMessage(s: FleetStats): MessageInitShape<typeof FleetStatsResponseSchema> {
  const c = s.counters;
  return {
    machines: BigInt(c.machines),
    provided: BigInt(c.provided),
    heartbeating: BigInt(c.heartbeating),
    pendingInstallation: BigInt(c.pendingInstallation),
    installed: BigInt(c.installed),
    pendingAgentStart: BigInt(c.pendingAgentStart),
    pendingRecovery: BigInt(c.pendingRecovery),
    agentsPending: BigInt(s.admission.pending),
    agentsPendingRekeyed: BigInt(s.admission.rekeyedPending),
    agentsRejected: BigInt(s.admission.rejected),
    hardware: s.hardware.map((h) => ({
      provider: h.provider,
      location: h.location,
      nodes: BigInt(h.nodes),
      cpuThreads: BigInt(h.cpuThreads),
      memoryBytes: h.memoryBytes,
    })),
  };
}
