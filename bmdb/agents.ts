import { sql, type SqlBool } from "kysely";
import { keyFingerprint } from "../lib/fingerprint.js";
import type { JsonValue } from "./database.js";
import { admitByEnrollment, admitKey, recordRefused, rejectKeyAfterRevocation, type AdmissionBounds, type Refusal } from "./admission.js";
import { AgentNotRegisteredError } from "./errors.js";
import { recordEvent } from "./history.js";
import { recordInstallationReport, type InstallationReportInput } from "./installation.js";
import { requireMachine } from "./machines.js";
import { isInstallationPending } from "./pending.js";
import type { TxContext } from "./private/tx-context.js";

// Agents: registering and revoking the key an agent proves itself with, and
// the heartbeat that carries a report (the plain heartbeat goes the batch
// path of ./heartbeat-batch.ts).

export interface HeartbeatInput {
  machineId: string;
  /** The Ed25519 key the agent proved possession of in the TLS handshake. */
  publicKey: Uint8Array;
  hardwareReport?: HardwareReportInput;
  installationReport?: InstallationReportInput;
  /**
   * The agent's certificate chained to an enrollment CA and named this
   * machine: an unknown key is admitted in this heartbeat's transaction
   * (admission.ts admitByEnrollment).
   */
  enrollment?: { ca: string };
}

/**
 * A non-empty hardware report: bytes exactly as received, a decoded view, and
 * the figures fleet stats sum, which the caller (who can decode the report)
 * computes: bmdb does not read protobuf.
 */
export interface HardwareReportInput {
  raw: Uint8Array;
  json: JsonValue;
  /** Hardware threads over every CPU package. */
  cpuThreads: number;
  /** Installed memory in bytes. */
  memoryBytes: bigint;
}

export type HeartbeatResult =
  | { authenticated: false; refusal: Refusal }
  | {
      authenticated: true;
      /** The serialized pending OSInstallationRequest, or null when nothing is pending. */
      installationRequest: Uint8Array | null;
      /** Set when this heartbeat's enrollment claim admitted the key. */
      enrolled?: true;
    };

/**
 * Records (preauthorizes) the key of the agent started on the machine,
 * replacing any older key: from now on only the new key authenticates, and
 * the old one is rejected (admission.ts admitKey).
 */
export async function registerAgent(ctx: TxContext, machineId: string, publicKey: Uint8Array, by: string): Promise<{ startedAt: Date; keyFingerprint: string }> {
  await requireMachine(ctx.trx, machineId);
  return admitKey(ctx, machineId, publicKey, { state: "preauthorized", by, event: "agent_registered" });
}

/**
 * Removes the machine's agent key and heartbeat: that agent is refused from
 * now on. Returns the revoked key's fingerprint.
 */
export async function revokeAgent(ctx: TxContext, machineId: string, by: string): Promise<string> {
  const { trx } = ctx;
  await requireMachine(trx, machineId);
  const gone = await trx.deleteFrom("machine_agent_started").where("machine_id", "=", machineId).returning("agent_public_key").executeTakeFirst();
  if (!gone) throw new AgentNotRegisteredError(machineId);
  const fingerprint = keyFingerprint(gone.agent_public_key);
  // A revoked key is refused for good: its agent records no pending request.
  await rejectKeyAfterRevocation(ctx, machineId, gone.agent_public_key, by);
  await recordEvent(ctx, machineId, "agent_revoked", { keyFingerprint: fingerprint });
  return fingerprint;
}

/**
 * Authenticates (machineId, publicKey) and, if they match, records the
 * heartbeat, the hardware report and the installation report, and reads the
 * pending installation request. An unknown machine and a wrong key give the
 * same answer on purpose.
 */
export async function heartbeat(ctx: TxContext, input: HeartbeatInput, bounds: AdmissionBounds): Promise<HeartbeatResult> {
  const authenticate = () => ctx.trx
    .selectFrom("machine_agent_started as s")
    .leftJoin("machine_installation_request as rq", "rq.machine_id", "s.machine_id")
    .leftJoin("machine_installation_report as rp", "rp.machine_id", "s.machine_id")
    .select([
      "rq.generation as requestGeneration",
      "rq.installation_request_raw as requestRaw",
      "rp.generation as reportGeneration",
      "rp.result as reportResult",
      "rp.error_message as reportError",
    ])
    .where("s.machine_id", "=", input.machineId)
    .where("s.agent_public_key", "=", input.publicKey)
    .executeTakeFirst();
  let row = await authenticate();
  let enrolled = false;
  if (!row && input.enrollment && (await admitByEnrollment(ctx, input.machineId, input.publicKey, input.enrollment.ca))) {
    enrolled = true;
    row = await authenticate();
  }
  if (!row) {
    // Asks to be admitted (a pending request, within bounds); answered as refused all the same.
    const [refusal] = await recordRefused(ctx, bounds, [input]);
    return { authenticated: false, refusal: refusal! };
  }

  await recordHeartbeat(ctx, input.machineId);
  if (input.hardwareReport) await recordHardwareReport(ctx, input.machineId, input.hardwareReport);
  let reportGeneration = row.reportGeneration;
  const report = input.installationReport;
  if (report) {
    const previous = { generation: row.reportGeneration, result: row.reportResult, errorMessage: row.reportError };
    await recordInstallationReport(ctx, input.machineId, previous, report);
    reportGeneration = report.generation;
  }
  const pending = isInstallationPending(row.requestGeneration, reportGeneration);
  return { authenticated: true, installationRequest: pending ? row.requestRaw : null, ...(enrolled && { enrolled: true as const }) };
}

/** Writes the heartbeat into the agent's row (authenticated just before); history records transitions only. */
async function recordHeartbeat(ctx: TxContext, machineId: string): Promise<void> {
  const { trx, now } = ctx;
  // In an UPDATE the right-hand sides read the row as it was: the previous heartbeat.
  const beat = await trx
    .updateTable("machine_agent_started")
    .set((eb) => ({
      previous_heartbeat_at: eb.ref("agent_heartbeat_at"),
      previous_stale: eb.ref("stale"),
      agent_heartbeat_at: now,
      stale: false,
    }))
    .where("machine_id", "=", machineId)
    .returning(["previous_heartbeat_at", "previous_stale"])
    .executeTakeFirstOrThrow();
  // The transitions: the first heartbeat, and coming back after the sweeper
  // (or the clock) found the machine stale.
  const previous = beat.previous_heartbeat_at;
  if (previous === null) {
    await recordEvent(ctx, machineId, "first_heartbeat", {});
  } else if (beat.previous_stale || now.getTime() - previous.getTime() >= ctx.thresholds.heartbeatFreshMs) {
    await recordEvent(ctx, machineId, "heartbeat_resumed", { silentForMs: now.getTime() - previous.getTime() });
  }
}

/**
 * Stores a hardware report. Agents resend the same report until it is
 * accepted: only a different report is written (and recorded in history).
 */
async function recordHardwareReport(ctx: TxContext, machineId: string, { raw, json, cpuThreads, memoryBytes }: HardwareReportInput): Promise<void> {
  const values = {
    hardware_report_raw: raw,
    hardware_report_json: JSON.stringify(json),
    cpu_threads: cpuThreads,
    memory_bytes: memoryBytes.toString(),
    reported_at: ctx.now,
  };
  const changed = await ctx.trx
    .insertInto("machine_hardware_report")
    .values({ machine_id: machineId, ...values })
    .onConflict((oc) =>
      oc
        .column("machine_id")
        .doUpdateSet(values)
        .where(sql<SqlBool>`machine_hardware_report.hardware_report_raw is distinct from excluded.hardware_report_raw`),
    )
    .returning("machine_id")
    .executeTakeFirst();
  if (changed) await recordEvent(ctx, machineId, "hardware_report_changed", { sizeBytes: raw.length }, { byAgent: true });
}
