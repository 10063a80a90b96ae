import { cutDetailText } from "./events.js";
import { recordEvent } from "./history.js";
import { requireMachine } from "./machines.js";
import type { TxContext } from "./private/tx-context.js";

// OS installation: the request an operator sets (heartbeats forward it
// unchanged while it is pending) and the report an agent sends back. Whether
// a request is pending is the rule of ./pending.ts.

export interface InstallationReportInput {
  generation: bigint;
  result: "success" | "error";
  errorMessage?: string;
  raw: Uint8Array;
}

/** The installation report a machine had before this heartbeat, if any. */
export interface PreviousReport {
  generation: bigint | null;
  result: "success" | "error" | null;
  errorMessage: string | null;
}

/**
 * Sets the machine's installation request (replacing an older one). raw is a
 * serialized OSInstallationRequest that heartbeats forward unchanged.
 */
export async function setInstallationRequest(ctx: TxContext, machineId: string, generation: bigint, raw: Uint8Array): Promise<void> {
  const { trx, now } = ctx;
  await requireMachine(trx, machineId);
  const values = { generation, installation_request_raw: raw, requested_at: now };
  await trx
    .insertInto("machine_installation_request")
    .values({ machine_id: machineId, ...values })
    .onConflict((oc) => oc.column("machine_id").doUpdateSet(values))
    .execute();
  await recordEvent(ctx, machineId, "installation_requested", { generation: generation.toString() });
}

/**
 * Stores an agent's installation report (replacing an older one) and records
 * it in history when it differs from the previous one.
 */
export async function recordInstallationReport(
  ctx: TxContext,
  machineId: string,
  previous: PreviousReport,
  report: InstallationReportInput,
): Promise<void> {
  const values = {
    generation: report.generation,
    result: report.result,
    error_message: report.errorMessage ?? null,
    installation_report_raw: report.raw,
    reported_at: ctx.now,
  };
  await ctx.trx
    .insertInto("machine_installation_report")
    .values({ machine_id: machineId, ...values })
    .onConflict((oc) => oc.column("machine_id").doUpdateSet(values))
    .execute();
  // Agents resend a report until it stops the request; record the
  // event once, not on every resend.
  const changed =
    previous.generation !== report.generation ||
    previous.result !== report.result ||
    previous.errorMessage !== (report.errorMessage ?? null);
  if (!changed) return;
  await recordEvent(
    ctx,
    machineId,
    "installation_reported",
    {
      generation: report.generation.toString(),
      result: report.result,
      ...(report.errorMessage ? { error: cutDetailText(report.errorMessage) } : {}),
    },
    { byAgent: true },
  );
}
