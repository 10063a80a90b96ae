import { sql, type Kysely, type SqlBool, type Transaction } from "kysely";
import { v4 as uuidv4 } from "uuid";
import type { Database, JsonValue } from "./database.js";
import { AgentNotRegisteredError, MachineNotFoundError, NotProvidedError, ProviderIdTakenError } from "./errors.js";
import { cutDetailText, EVENTS_CHANNEL, encodeEvent, type EventHub, type EventListener, type MachineEvent, type MachineEventKind } from "./events.js";
import { DEFAULT_THRESHOLDS, fleetStats, listMachines, machinesWithTags, type FleetStats, type FleetThresholds, type ListFilter, type MachineSummary } from "./fleet.js";
import { keyFingerprint } from "./fingerprint.js";
import { heartbeatAges, type HeartbeatAgeCount } from "./heartbeat-ages.js";
import { heartbeatBatch, type BatchHeartbeat, type BatchOutcome } from "./heartbeat-batch.js";
import { isInstallationPending } from "./pending.js";
import { newEventId } from "./private/event-id.js";
import { breakerFor, guarded, newTransactionStats, transact, type TransactionStats } from "./private/transact.js";

/** History rows an agent can cause, per machine and kind, within AGENT_EVENT_WINDOW_MS. */
export const AGENT_EVENTS_PER_WINDOW = 20;
const AGENT_EVENT_WINDOW_MS = 3_600_000;
/** What bmdb needs to know of the time; injectable so tests control it. */
export type Clock = () => Date;

export interface BmdbOptions {
  /** Attempts per transaction before a serialization failure is given up on. */
  maxAttempts?: number;
  clock?: Clock;
  thresholds?: FleetThresholds;
}

export interface HistoryPage {
  events: MachineEvent[];
  /** Cursor for the next (older) page. */
  next: { occurredAt: Date; eventId: string } | undefined;
}

export interface HeartbeatInput {
  machineId: string;
  /** The Ed25519 key the agent proved possession of in the TLS handshake. */
  publicKey: Uint8Array;
  /** A non-empty hardware report: bytes exactly as received, plus a decoded view. */
  hardwareReport?: { raw: Uint8Array; json: JsonValue };
  installationReport?: {
    generation: bigint;
    result: "success" | "error";
    errorMessage?: string;
    raw: Uint8Array;
  };
}

export type HeartbeatResult =
  | { authenticated: false }
  | {
      authenticated: true;
      /** The serialized pending OSInstallationRequest, or null when nothing is pending. */
      installationRequest: Uint8Array | null;
    };

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
  agentStarted: { startedAt: Date; publicKey: Uint8Array; keyFingerprint: string } | null;
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


/**
 * The machine database: domain operations over the tag model, each one
 * SERIALIZABLE transaction. Callers see neither SQL nor database errors, only
 * results and the errors of ./errors.ts.
 */
export class Bmdb {
  readonly stats: TransactionStats = newTransactionStats();
  readonly thresholds: FleetThresholds;
  readonly #maxAttempts: number;
  readonly #clock: Clock;
  readonly #hub: EventHub | undefined;

  constructor(
    readonly db: Kysely<Database>,
    options: BmdbOptions = {},
    hub?: EventHub,
  ) {
    this.#maxAttempts = options.maxAttempts ?? 10;
    this.#clock = options.clock ?? (() => new Date());
    this.thresholds = options.thresholds ?? DEFAULT_THRESHOLDS;
    this.#hub = hub;
  }

  /**
   * Calls listener with every machine event committed from now on, by any
   * server on this database. Returns the function that unsubscribes.
   */
  subscribe(listener: EventListener): Promise<() => void> {
    if (!this.#hub) throw new Error("this database handle has no event source");
    return this.#hub.subscribe(listener);
  }

  now(): Date {
    return this.#clock();
  }

  async close(): Promise<void> {
    await this.#hub?.close();
    await this.db.destroy();
  }

  #transact<T>(operation: string, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    return transact(this.db, this.stats, operation, { maxAttempts: this.#maxAttempts }, fn);
  }

  /** Runs one autocommitted statement on the same guarded path as a transaction (breaker, retries, stats). */
  #statement<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    return guarded({ db: this.db, stats: this.stats, breaker: breakerFor(this.db), maxAttempts: this.#maxAttempts }, operation, fn);
  }

  /** False while the database is known to be unreachable (calls then fail at once). */
  get databaseUp(): boolean {
    return breakerFor(this.db).up;
  }

  /**
   * Records a batch of plain heartbeats (no reports) in one statement: the
   * group-commit path. Each machine at most once per batch. Outcomes come in
   * input order; an unknown machine and a wrong key give the same answer.
   * Throws (for the whole batch) only what a single heartbeat would.
   */
  heartbeatBatch(batch: readonly BatchHeartbeat[]): Promise<BatchOutcome[]> {
    return this.#statement("heartbeatBatch", () => heartbeatBatch(this.db, this.#clock(), this.thresholds, batch));
  }

  /**
   * Authenticates (machineId, publicKey) and, if they match, records the
   * heartbeat, the hardware report and the installation report, and reads the
   * pending installation request, all in one transaction. An unknown machine
   * and a wrong key give the same answer on purpose.
   */
  heartbeat(input: HeartbeatInput): Promise<HeartbeatResult> {
    return this.#transact("heartbeat", async (trx) => {
      const now = this.#clock();
      const row = await trx
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
      if (!row) return { authenticated: false };

      const beat = await trx
        .insertInto("machine_agent_heartbeat")
        .values({ machine_id: input.machineId, agent_heartbeat_at: now, previous_heartbeat_at: null })
        .onConflict((oc) =>
          oc.column("machine_id").doUpdateSet((eb) => ({
            previous_heartbeat_at: eb.ref("machine_agent_heartbeat.agent_heartbeat_at"),
            previous_stale: eb.ref("machine_agent_heartbeat.stale"),
            agent_heartbeat_at: now,
            stale: false,
          })),
        )
        .returning(["previous_heartbeat_at", "previous_stale"])
        .executeTakeFirstOrThrow();
      // History records transitions only: the first heartbeat, and coming
      // back after the sweeper (or the clock) found the machine stale.
      const previous = beat.previous_heartbeat_at;
      if (previous === null) {
        await this.#event(trx, input.machineId, now, "first_heartbeat", {});
      } else if (beat.previous_stale || now.getTime() - previous.getTime() >= this.thresholds.heartbeatFreshMs) {
        await this.#event(trx, input.machineId, now, "heartbeat_resumed", { silentForMs: now.getTime() - previous.getTime() });
      }

      if (input.hardwareReport) {
        const values = {
          hardware_report_raw: input.hardwareReport.raw,
          hardware_report_json: JSON.stringify(input.hardwareReport.json),
          reported_at: now,
        };
        // Agents resend the same report until it is accepted: only a
        // different report is written (and recorded in history).
        const changed = await trx
          .insertInto("machine_hardware_report")
          .values({ machine_id: input.machineId, ...values })
          .onConflict((oc) =>
            oc
              .column("machine_id")
              .doUpdateSet(values)
              .where(sql<SqlBool>`machine_hardware_report.hardware_report_raw is distinct from excluded.hardware_report_raw`),
          )
          .returning("machine_id")
          .executeTakeFirst();
        if (changed) await this.#agentEvent(trx, input.machineId, now, "hardware_report_changed", { sizeBytes: input.hardwareReport.raw.length });
      }

      let reportGeneration = row.reportGeneration;
      const report = input.installationReport;
      if (report) {
        const values = {
          generation: report.generation,
          result: report.result,
          error_message: report.errorMessage ?? null,
          installation_report_raw: report.raw,
          reported_at: now,
        };
        await trx
          .insertInto("machine_installation_report")
          .values({ machine_id: input.machineId, ...values })
          .onConflict((oc) => oc.column("machine_id").doUpdateSet(values))
          .execute();
        // Agents resend a report until it stops the request; record the
        // event once, not on every resend.
        const changed =
          row.reportGeneration !== report.generation ||
          row.reportResult !== report.result ||
          row.reportError !== (report.errorMessage ?? null);
        if (changed) {
          await this.#agentEvent(trx, input.machineId, now, "installation_reported", {
            generation: report.generation.toString(),
            result: report.result,
            ...(report.errorMessage ? { error: cutDetailText(report.errorMessage) } : {}),
          });
        }
        reportGeneration = report.generation;
      }

      const pending = isInstallationPending(row.requestGeneration, reportGeneration);
      return { authenticated: true, installationRequest: pending ? row.requestRaw : null };
    });
  }

  /** Creates a machine, optionally provided by (provider, providerId), unique together. */
  createMachine(input: CreateMachineInput = {}): Promise<string> {
    return this.#transact("createMachine", async (trx) => {
      const now = this.#clock();
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
      await this.#event(trx, machineId, now, "machine_created", p ? { provider: p.provider, providerId: p.providerId } : {});
      return machineId;
    });
  }

  /**
   * Records that an agent was started on the machine with this key, replacing
   * any older key: from now on only the new key authenticates.
   */
  registerAgent(machineId: string, publicKey: Uint8Array): Promise<{ startedAt: Date; keyFingerprint: string }> {
    return this.#transact("registerAgent", async (trx) => {
      const now = this.#clock();
      await requireMachine(trx, machineId);
      const values = { agent_started_at: now, agent_public_key: publicKey };
      await trx
        .insertInto("machine_agent_started")
        .values({ machine_id: machineId, ...values })
        .onConflict((oc) => oc.column("machine_id").doUpdateSet(values))
        .execute();
      const fingerprint = keyFingerprint(publicKey);
      await this.#event(trx, machineId, now, "agent_registered", { keyFingerprint: fingerprint });
      return { startedAt: now, keyFingerprint: fingerprint };
    });
  }

  /**
   * Sets the machine's installation request (replacing an older one). raw is a
   * serialized OSInstallationRequest that heartbeats forward unchanged.
   */
  setInstallationRequest(machineId: string, generation: bigint, raw: Uint8Array): Promise<void> {
    return this.#transact("setInstallationRequest", async (trx) => {
      const now = this.#clock();
      await requireMachine(trx, machineId);
      const values = { generation, installation_request_raw: raw, requested_at: now };
      await trx
        .insertInto("machine_installation_request")
        .values({ machine_id: machineId, ...values })
        .onConflict((oc) => oc.column("machine_id").doUpdateSet(values))
        .execute();
      await this.#event(trx, machineId, now, "installation_requested", { generation: generation.toString() });
    });
  }

  /**
   * Removes the machine's agent key and heartbeat: that agent is refused from
   * now on. Returns the revoked key's fingerprint.
   */
  revokeAgent(machineId: string): Promise<string> {
    return this.#transact("revokeAgent", async (trx) => {
      const now = this.#clock();
      await requireMachine(trx, machineId);
      const gone = await trx.deleteFrom("machine_agent_started").where("machine_id", "=", machineId).returning("agent_public_key").executeTakeFirst();
      if (!gone) throw new AgentNotRegisteredError(machineId);
      await trx.deleteFrom("machine_agent_heartbeat").where("machine_id", "=", machineId).execute();
      const fingerprint = keyFingerprint(gone.agent_public_key);
      await this.#event(trx, machineId, now, "agent_revoked", { keyFingerprint: fingerprint });
      return fingerprint;
    });
  }

  /** Deletes the machine and every tag; its history stays. */
  deleteMachine(machineId: string): Promise<void> {
    return this.#transact("deleteMachine", async (trx) => {
      const now = this.#clock();
      const gone = await trx.deleteFrom("machines").where("machine_id", "=", machineId).returning("machine_id").executeTakeFirst();
      if (!gone) throw new MachineNotFoundError(machineId);
      await this.#event(trx, machineId, now, "machine_deleted", {});
    });
  }

  /** Updates what the provider says of a provided machine; undefined fields stay. */
  updateProvider(machineId: string, update: { status?: string; address?: string; location?: string }): Promise<void> {
    return this.#transact("updateProvider", async (trx) => {
      const now = this.#clock();
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
      const details: { [key: string]: JsonValue } = {};
      for (const [k, v] of Object.entries(update)) if (v !== undefined) details[k] = v;
      await this.#event(trx, machineId, now, "provider_updated", details);
    });
  }

  /** A page of machines matching filter, in machine ID order after `after`. */
  listMachines(filter: ListFilter, pageSize: number, after?: string): Promise<{ machines: MachineSummary[]; nextAfter: string | undefined }> {
    return this.#transact("listMachines", (trx) => listMachines(trx, this.#clock(), this.thresholds, filter, pageSize, after));
  }

  /** The fleet counters and hardware totals. */
  fleetStats(): Promise<FleetStats> {
    return this.#transact("fleetStats", (trx) => fleetStats(trx, this.#clock(), this.thresholds));
  }

  /** Machines by last-heartbeat age (bounds in ms, ascending), per provider and location. */
  heartbeatAges(boundsMs: readonly number[]): Promise<HeartbeatAgeCount[]> {
    return this.#transact("heartbeatAges", (trx) => heartbeatAges(trx, this.#clock(), boundsMs));
  }

  /** A machine's history, newest first; works for deleted machines too. */
  getHistory(machineId: string, pageSize: number, before?: { occurredAt: Date; eventId: string }): Promise<HistoryPage> {
    return this.#transact("getHistory", async (trx) => {
      let q = trx.selectFrom("machine_history").selectAll().where("machine_id", "=", machineId);
      if (before) {
        q = q.where((eb) =>
          eb.or([
            eb("occurred_at", "<", before.occurredAt),
            eb.and([eb("occurred_at", "=", before.occurredAt), eb("event_id", "<", before.eventId)]),
          ]),
        );
      }
      const rows = await q.orderBy("occurred_at", "desc").orderBy("event_id", "desc").limit(pageSize + 1).execute();
      if (rows.length === 0 && !before) {
        const exists = await trx.selectFrom("machines").select("machine_id").where("machine_id", "=", machineId).executeTakeFirst();
        if (!exists) throw new MachineNotFoundError(machineId);
      }
      const events = rows.slice(0, pageSize).map((r) => ({
        eventId: r.event_id,
        machineId: r.machine_id,
        occurredAt: r.occurred_at,
        event: r.event as MachineEventKind,
        details: r.details as { [key: string]: JsonValue },
      }));
      const last = events.at(-1);
      return { events, next: rows.length > pageSize && last ? { occurredAt: last.occurredAt, eventId: last.eventId } : undefined };
    });
  }

  /**
   * Marks machines whose last heartbeat is no longer fresh as stale, once,
   * recording "heartbeat_stale" for each. Run periodically by every server;
   * the stale flag makes concurrent sweeps record each transition once.
   */
  sweepStale(): Promise<string[]> {
    return this.#transact("sweepStale", async (trx) => {
      const now = this.#clock();
      const since = new Date(now.getTime() - this.thresholds.heartbeatFreshMs);
      const rows = await trx
        .updateTable("machine_agent_heartbeat")
        .set({ stale: true })
        .where("stale", "=", false)
        .where("agent_heartbeat_at", "<", since)
        .returning(["machine_id", "agent_heartbeat_at"])
        .execute();
      for (const r of rows) await this.#event(trx, r.machine_id, now, "heartbeat_stale", { lastHeartbeatAt: r.agent_heartbeat_at.toISOString() });
      return rows.map((r) => r.machine_id);
    });
  }

  /**
   * A history row caused by what an agent sent (not by an operator): bounded
   * in rate per machine, so that an agent flipping its report back and forth
   * cannot grow history without end. Past the bound the tag is still
   * updated; only the history row is skipped.
   */
  async #agentEvent(
    trx: Transaction<Database>,
    machineId: string,
    at: Date,
    event: MachineEventKind,
    details: { [key: string]: JsonValue },
  ): Promise<void> {
    const since = new Date(at.getTime() - AGENT_EVENT_WINDOW_MS);
    const { n } = await trx
      .selectFrom("machine_history")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .where("machine_id", "=", machineId)
      .where("occurred_at", ">", since)
      .where("event", "=", event)
      .executeTakeFirstOrThrow();
    if (Number(n) >= AGENT_EVENTS_PER_WINDOW) return;
    await this.#event(trx, machineId, at, event, details);
  }

  /** Writes a history row and announces it; both commit or neither does. */
  async #event(
    trx: Transaction<Database>,
    machineId: string,
    at: Date,
    event: MachineEventKind,
    details: { [key: string]: JsonValue },
  ): Promise<void> {
    const e: MachineEvent = { eventId: newEventId(at), machineId, occurredAt: at, event, details };
    await trx
      .insertInto("machine_history")
      .values({ event_id: e.eventId, machine_id: machineId, occurred_at: at, event, details: JSON.stringify(details) })
      .execute();
    if (this.#hub) await sql`select pg_notify(${EVENTS_CHANNEL}, ${encodeEvent(e)})`.execute(trx);
  }

  /** Reads a machine with every tag. */
  getMachine(machineId: string): Promise<MachineView> {
    return this.#transact("getMachine", async (trx) => {
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
          "h.agent_heartbeat_at",
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
              }
            : null,
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
    });
  }
}

async function requireMachine(trx: Transaction<Database>, machineId: string): Promise<void> {
  const m = await trx.selectFrom("machines").select("machine_id").where("machine_id", "=", machineId).executeTakeFirst();
  if (!m) throw new MachineNotFoundError(machineId);
}
