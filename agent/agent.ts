import { toBinary, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import {
  AgentHardwareReportSchema,
  OSInstallationRequestSchema,
  type AgentHardwareReport,
  type HeartbeatRequestSchema,
  type HeartbeatResponse,
  type OSInstallationRequest,
} from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { MAX_TIMER_MS } from "../lib/flags.js";
import { Backoff, jittered, pushbackDelay, retryPushbackMs, type Random } from "./backoff.js";
import type { CommandResult } from "./commands.js";
import type { InstallState, InstallStateFile } from "./install-state.js";
import { cleanText, MAX_INSTALL_ERROR_CHARS } from "./sanitize.js";

/** The states of the agent; every transition between them is logged with its reason. */
export type State = "Init" | "Heartbeat" | "Idle" | "Install" | "Report" | "Reboot";

export interface Transition {
  from: State;
  to: State;
  reason: string;
}

/** Sends one heartbeat; rejects with a gRPC ServiceError (code, details, metadata: the trailers). */
export type HeartbeatTransport = (request: MessageInitShape<typeof HeartbeatRequestSchema>) => Promise<HeartbeatResponse>;

export interface AgentDeps {
  machineId: string;
  transport: HeartbeatTransport;
  collectHardwareReport: () => AgentHardwareReport;
  /** Runs the installer with the request; undefined when none is configured. */
  install?: (request: OSInstallationRequest) => Promise<CommandResult>;
  /** Runs the reboot command after a successful installation, if configured. */
  reboot?: () => Promise<CommandResult>;
  installState: Pick<InstallStateFile, "read" | "write">;
  intervalMs: number;
  /** ± fraction of the interval. */
  jitter: number;
  sleep: (ms: number) => Promise<void>;
  random?: Random;
  logger: Logger;
  onTransition?: (t: Transition) => void;
}

/** The range a server-suggested heartbeat interval is clamped to. */
export const MIN_SUGGESTED_INTERVAL_MS = 1_000;
export const MAX_SUGGESTED_INTERVAL_MS = 24 * 3600_000;

/** gRPC UNAUTHENTICATED: the server does not (yet) know this machine ID with this key. */
const UNAUTHENTICATED = 16;
export const NOT_ADMITTED = "not admitted yet: pending operator acceptance or a wrong key";

function describeError(e: unknown): { code?: number; text: string } {
  const err = e as { code?: number; details?: string; message?: string };
  return typeof err.code === "number" ? { code: err.code, text: `code ${err.code}: ${err.details ?? err.message}` } : { text: String(err.message ?? e) };
}

/**
 * The reference agent as an explicit state machine:
 *
 *   Init ─► Heartbeat ─ok─► Idle ─► Heartbeat …
 *              │  └─error─► Idle (backoff)
 *              └─new installation generation─► Install ─► Report ─ok─► Reboot ─► Idle
 *                                                           └─error─► Idle (backoff; the
 *                                                              next heartbeat carries the report)
 *
 * step() performs the current state's action and moves to the next state, so
 * tests can drive it one transition at a time.
 */
export class Agent {
  state: State = "Init";
  /** The result of the last heartbeat (for run --once). */
  lastError: { code?: number; text: string } | undefined;
  readonly #d: AgentDeps;
  readonly #backoff: Backoff;
  #intervalMs: number;
  #delayMs = 0;
  /** Bytes of the hardware report the server accepted; resent when they change. */
  #acceptedReport: Uint8Array | undefined;
  #install: InstallState | undefined;
  #request: OSInstallationRequest | undefined;
  #signal: AbortSignal | undefined;
  /** The last heartbeat's error as thrown (for its trailers). */
  #failure: unknown;
  /** Whether "not admitted" was already said since the last other outcome. */
  #saidNotAdmitted = false;

  constructor(deps: AgentDeps) {
    this.#d = deps;
    this.#backoff = new Backoff(undefined, deps.random);
    this.#intervalMs = deps.intervalMs;
  }

  /** Node's timers fire at once for more than 2^31-1 ms: never ask for more. */
  #setDelay(ms: number): number {
    this.#delayMs = Math.min(MAX_TIMER_MS, Math.max(0, ms));
    return this.#delayMs;
  }

  /** The delay Idle will wait before the next heartbeat. */
  get nextDelayMs(): number {
    return this.#delayMs;
  }

  #go(to: State, reason: string): State {
    const t: Transition = { from: this.state, to, reason };
    this.#d.logger.info(t, `${t.from} -> ${t.to}: ${reason}`);
    this.#d.onTransition?.(t);
    this.state = to;
    return to;
  }

  #idleAfterSuccess(reason: string): State {
    this.#backoff.reset();
    this.#setDelay(jittered(this.#intervalMs, this.#d.jitter, this.#d.random));
    return this.#go("Idle", `${reason}; next heartbeat in ${(this.#delayMs / 1000).toFixed(1)}s`);
  }

  /**
   * After a failed heartbeat or report: wait what the server asked for in
   * grpc-retry-pushback-ms, if it did, else the exponential backoff.
   */
  #idleAfterFailure(what: string): State {
    const error = this.lastError!;
    let reason = `${what} failed: ${error.text}`;
    if (error.code === UNAUTHENTICATED) {
      reason = `${NOT_ADMITTED} (${reason})`;
      if (!this.#saidNotAdmitted) {
        this.#d.logger.warn(
          { machineId: this.#d.machineId },
          `${NOT_ADMITTED}: the server does not accept this machine ID with this agent's key yet; an operator admits it with bmctl agent accept (it is listed by bmctl agent pending) or bmctl agent register. Retrying with backoff`,
        );
        this.#saidNotAdmitted = true;
      }
    } else {
      this.#saidNotAdmitted = false;
    }
    const pushback = retryPushbackMs(this.#failure);
    if (pushback !== undefined) {
      this.#setDelay(pushbackDelay(pushback, this.#d.random));
      this.#d.logger.info({ code: error.code, pushbackMs: pushback, delayMs: Math.round(this.#delayMs) }, "server asked to retry later (grpc-retry-pushback-ms)");
      return this.#go("Idle", `${reason}; server pushback ${pushback}ms, retrying in ${(this.#delayMs / 1000).toFixed(1)}s`);
    }
    this.#setDelay(this.#backoff.next());
    return this.#go("Idle", `${reason}; retrying in ${(this.#delayMs / 1000).toFixed(1)}s`);
  }

  /** The installation report still owed to the server, if any. */
  #pendingReport(): MessageInitShape<typeof HeartbeatRequestSchema>["installationReport"] {
    const s = this.#install;
    if (!s || s.reported || s.status === "running") return undefined;
    return {
      generation: s.generation,
      // The installer's words are not ours to trust: no control characters, valid UTF-8, bounded.
      result:
        s.status === "succeeded"
          ? { case: "success", value: {} }
          : { case: "error", value: { error: cleanText(s.error ?? "", MAX_INSTALL_ERROR_CHARS) || "installation failed" } },
    };
  }

  /** Sends a heartbeat with whatever is owed; returns the response or undefined on error. */
  async #heartbeat(): Promise<HeartbeatResponse | undefined> {
    const hw = this.#d.collectHardwareReport();
    const hwBytes = toBinary(AgentHardwareReportSchema, hw);
    const sendReport = !this.#acceptedReport || !Buffer.from(hwBytes).equals(Buffer.from(this.#acceptedReport));
    const installationReport = this.#pendingReport();
    try {
      const res = await this.#d.transport({
        machineId: this.#d.machineId,
        ...(sendReport && { hardwareReport: hw }),
        ...(installationReport && { installationReport }),
      });
      this.lastError = undefined;
      this.#failure = undefined;
      this.#saidNotAdmitted = false;
      if (sendReport) this.#acceptedReport = hwBytes;
      if (installationReport && this.#install) {
        this.#install = { ...this.#install, reported: true };
        this.#d.installState.write(this.#install);
      }
      if (res.suggestedInterval) {
        const suggested = durationMs(res.suggestedInterval);
        // A zero or negative suggestion is none; others are clamped to 1 s .. 24 h,
        // so that a wrong server neither makes agents spin nor go silent.
        const ms = Math.min(MAX_SUGGESTED_INTERVAL_MS, Math.max(MIN_SUGGESTED_INTERVAL_MS, suggested));
        if (Number.isFinite(suggested) && suggested > 0 && ms !== this.#intervalMs) {
          if (ms !== suggested) {
            this.#d.logger.warn({ suggestedMs: suggested, intervalMs: ms }, "server suggested a heartbeat interval outside 1s..24h; clamped");
          } else {
            this.#d.logger.info({ intervalMs: ms }, "server suggested a heartbeat interval");
          }
          this.#intervalMs = ms;
        }
      }
      return res;
    } catch (e) {
      this.lastError = describeError(e);
      this.#failure = e;
      return undefined;
    }
  }

  async step(): Promise<State> {
    switch (this.state) {
      case "Init": {
        this.#install = this.#d.installState.read();
        if (this.#install?.status === "running") {
          // We died while the installer ran: never run it again, report why.
          this.#install = { ...this.#install, status: "failed", error: "installation interrupted: the agent restarted while it ran", reported: false };
          this.#d.installState.write(this.#install);
        }
        return this.#go("Heartbeat", this.#install ? `started; last installation generation ${this.#install.generation} ${this.#install.status}` : "started");
      }

      case "Heartbeat": {
        const res = await this.#heartbeat();
        if (!res) return this.#idleAfterFailure("heartbeat");
        const req = res.installationRequest;
        if (req && req.generation !== this.#install?.generation) {
          this.#request = req;
          return this.#go("Install", `server requested installation generation ${req.generation}`);
        }
        return this.#idleAfterSuccess(req ? `heartbeat ok; generation ${req.generation} already handled` : "heartbeat ok");
      }

      case "Install": {
        const req = this.#request!;
        this.#install = { generation: req.generation, status: "running", reported: false };
        this.#d.installState.write(this.#install);
        const result: CommandResult = this.#d.install
          ? await this.#d.install(req)
          : { ok: false, error: "no installer configured on this agent (--installer)" };
        this.#install = result.ok
          ? { generation: req.generation, status: "succeeded", reported: false }
          : { generation: req.generation, status: "failed", error: result.error, reported: false };
        this.#d.installState.write(this.#install);
        return this.#go("Report", result.ok ? `installer succeeded for generation ${req.generation}` : `installation failed: ${result.error}`);
      }

      case "Report": {
        const res = await this.#heartbeat();
        if (!res) return this.#idleAfterFailure("report");
        if (this.#install?.status === "succeeded" && this.#d.reboot) return this.#go("Reboot", `generation ${this.#install.generation} installed and reported`);
        return this.#idleAfterSuccess(`generation ${this.#install?.generation} reported (${this.#install?.status})`);
      }

      case "Reboot": {
        const r = await this.#d.reboot!();
        return this.#idleAfterSuccess(r.ok ? "reboot command returned" : `reboot failed: ${r.error}`);
      }

      case "Idle": {
        await this.#d.sleep(this.#delayMs);
        // Woken by a stop request, not by the interval: stay put.
        if (this.#signal?.aborted) return this.state;
        return this.#go("Heartbeat", "interval elapsed");
      }
    }
  }

  /** Runs until signal aborts; Idle's sleep is expected to end early on abort. */
  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    while (!signal.aborted) await this.step();
  }

  /**
   * One heartbeat cycle: the heartbeat and, if it asked for one, the
   * installation and its report. Returns the last heartbeat's error, if any.
   */
  async once(): Promise<{ code?: number; text: string } | undefined> {
    do await this.step();
    while (this.state !== "Idle");
    return this.lastError;
  }
}

/** The installation request as JSON, as the installer reads it on stdin. */
export function installRequestJson(req: OSInstallationRequest): string {
  return toJsonString(OSInstallationRequestSchema, req);
}

