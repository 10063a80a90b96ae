import type { Transaction } from "kysely";
import { v4 as uuidv4 } from "uuid";
import { keyFingerprint } from "../lib/fingerprint.js";
import { listRequests, type AgentRequestView } from "./agent-requests.js";
import type { AdmissionState, Database, JsonValue } from "./database.js";
import { MachineNotFoundError, NotProvidedError, ProviderIdTakenError } from "./errors.js";
import { machinesWithTags } from "./fleet.js";
import { recordEvent, type EventDetails } from "./history.js";
import { isInstallationPending } from "./pending.js";
import type { TxContext } from "./private/tx-context.js";

/** Pending and rejected keys shown with a machine. */
const MACHINE_REQUESTS_SHOWN = 20;

// Machines themselves: creating and deleting them, what their provider says
// of them, and reading one machine with every tag.

export interface CreateMachineInput {
  provider?: { provider: string; providerId: string };
}

export interface MachineView {
  machineId: string;
  createdAt: Date;
  provided: {
    provider: string;
    providerId: string;
    status: string | null;
    address: string | null;
    location: string | null;
  } | null;
  agentStarted: { startedAt: Date; publicKey: Uint8Array; keyFingerprint: string; admission: AdmissionState; admittedBy: string | null } | null;
  /** Pending and rejected keys of this machine (at most MACHINE_REQUESTS_SHOWN). */
  agentRequests: AgentRequestView[];
  agentHeartbeat: { lastHeartbeatAt: Date } | null;
  hardwareReport: { reportedAt: Date; raw: Uint8Array; json: JsonValue } | null;
  installationRequest: { generation: bigint; requestedAt: Date; raw: Uint8Array } | null;
  installationReport: {
    generation: bigint;
    reportedAt: Date;
    result: "success" | "error";
    errorMessage: string | null;
  } | null;
  /** True when the agent's next heartbeat will carry installationRequest. */
  installationPending: boolean;
}

export interface ProviderUpdate {
  status?: string;
  address?: string;
  location?: string;
}

/** Throws MachineNotFoundError unless the machine exists. */
export async function requireMachine(trx: Transaction<Database>, machineId: string): Promise<void> {
  const m = await trx.selectFrom("machines").select("machine_id").where("machine_id", "=", machineId).executeTakeFirst();
  if (!m) throw new MachineNotFoundError(machineId);
}

/** Creates a machine, optionally provided by (provider, providerId), unique together. */
export async function createMachine(ctx: TxContext, input: CreateMachineInput): Promise<string> {
  const { trx, now } = ctx;
  const machineId = uuidv4();
  await trx.insertInto("machines").values({ machine_id: machineId, created_at: now }).execute();
  const p = input.provider;
  if (p) {
    const inserted = await trx
      .insertInto("machine_provided")
      .values({
        machine_id: machineId,
        provider: p.provider,
        provider_id: p.providerId,
        provider_status: null,
        provider_address: null,
        provider_location: null,
      })
      // A conflict is an answer, not an error: the transaction stays usable.
      .onConflict((oc) => oc.columns(["provider", "provider_id"]).doNothing())
      .returning("machine_id")
      .executeTakeFirst();
    if (!inserted) throw new ProviderIdTakenError(p.provider, p.providerId);
  }
  await recordEvent(ctx, machineId, "machine_created", p ? { provider: p.provider, providerId: p.providerId } : {});
  return machineId;
}

/** Deletes the machine and every tag; its history stays. */
export async function deleteMachine(ctx: TxContext, machineId: string): Promise<void> {
  const gone = await ctx.trx.deleteFrom("machines").where("machine_id", "=", machineId).returning("machine_id").executeTakeFirst();
  if (!gone) throw new MachineNotFoundError(machineId);
  await recordEvent(ctx, machineId, "machine_deleted", {});
}

/** Updates what the provider says of a provided machine; undefined fields stay. */
export async function updateProvider(ctx: TxContext, machineId: string, update: ProviderUpdate): Promise<void> {
  const { trx } = ctx;
  await requireMachine(trx, machineId);
  const values = {
    ...(update.status !== undefined && { provider_status: update.status }),
    ...(update.address !== undefined && { provider_address: update.address }),
    ...(update.location !== undefined && { provider_location: update.location }),
  };
  const q = trx.updateTable("machine_provided").where("machine_id", "=", machineId);
  const done = Object.keys(values).length
    ? await q.set(values).returning("machine_id").executeTakeFirst()
    : await trx.selectFrom("machine_provided").select("machine_id").where("machine_id", "=", machineId).executeTakeFirst();
  if (!done) throw new NotProvidedError(machineId);
  const details: EventDetails = {};
  for (const [k, v] of Object.entries(update)) if (v !== undefined) details[k] = v;
  await recordEvent(ctx, machineId, "provider_updated", details);
}

/** Reads a machine with every tag. */
export async function getMachine({ trx }: TxContext, machineId: string): Promise<MachineView> {
  const r = await machinesWithTags(trx)
    .select([
      "m.machine_id",
      "m.created_at",
      "p.provider",
      "p.provider_id",
      "p.provider_status",
      "p.provider_address",
      "p.provider_location",
      "s.agent_started_at",
      "s.agent_public_key",
      "s.admission",
      "s.admitted_by",
      "s.agent_heartbeat_at",
      "hw.reported_at as hw_reported_at",
      "hw.hardware_report_raw",
      "hw.hardware_report_json",
      "rq.generation as rq_generation",
      "rq.requested_at",
      "rq.installation_request_raw",
      "rp.generation as rp_generation",
      "rp.reported_at as rp_reported_at",
      "rp.result",
      "rp.error_message",
    ])
    .where("m.machine_id", "=", machineId)
    .executeTakeFirst();
  if (!r) throw new MachineNotFoundError(machineId);
  return {
    machineId: r.machine_id,
    createdAt: r.created_at,
    provided:
      r.provider !== null && r.provider_id !== null
        ? {
            provider: r.provider,
            providerId: r.provider_id,
            status: r.provider_status,
            address: r.provider_address,
            location: r.provider_location,
          }
        : null,
    agentStarted:
      r.agent_started_at !== null && r.agent_public_key !== null
        ? {
            startedAt: r.agent_started_at,
            publicKey: r.agent_public_key,
            keyFingerprint: keyFingerprint(r.agent_public_key),
            admission: r.admission ?? "preauthorized",
            admittedBy: r.admitted_by,
          }
        : null,
    agentRequests: (await listRequests(trx, { machineId }, MACHINE_REQUESTS_SHOWN)).requests,
    agentHeartbeat: r.agent_heartbeat_at !== null ? { lastHeartbeatAt: r.agent_heartbeat_at } : null,
    hardwareReport:
      r.hw_reported_at !== null && r.hardware_report_raw !== null
        ? { reportedAt: r.hw_reported_at, raw: r.hardware_report_raw, json: r.hardware_report_json }
        : null,
    installationRequest:
      r.rq_generation !== null && r.requested_at !== null && r.installation_request_raw !== null
        ? { generation: r.rq_generation, requestedAt: r.requested_at, raw: r.installation_request_raw }
        : null,
    installationReport:
      r.rp_generation !== null && r.rp_reported_at !== null && r.result !== null
        ? {
            generation: r.rp_generation,
            reportedAt: r.rp_reported_at,
            result: r.result,
            errorMessage: r.error_message,
          }
        : null,
    installationPending: isInstallationPending(r.rq_generation, r.rp_generation),
  };
}
