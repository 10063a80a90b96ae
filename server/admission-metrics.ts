import { Counter, Gauge, type Registry } from "prom-client";
import type { AdmissionCounts, Refusal } from "../bmdb/index.js";

export type Decision = { decision: "accepted" | "rejected" | "preauthorized"; via: "operator" | "enrollment_ca" | "import" };

/**
 * Admission metrics: why heartbeats were refused (unknown_machine,
 * pending_new, pending, rejected, machine_full, total_full, raced), the
 * decisions taken, the requests waiting (refreshed with the fleet gauges) and
 * those that expired.
 */
export class AdmissionMetrics {
  readonly #refusals: Counter<"reason">;
  readonly #decisions: Counter<"decision" | "via">;
  readonly #requests: Gauge<"state">;
  readonly #expired: Counter;

  constructor(registry: Registry) {
    this.#refusals = new Counter({
      name: "bmaas_agent_refusals_total",
      help: "Heartbeats refused UNAUTHENTICATED by the database, by reason (unknown_machine records nothing; *_full: past a pending bound).",
      labelNames: ["reason"],
      registers: [registry],
    });
    this.#decisions = new Counter({
      name: "bmaas_admission_decisions_total",
      help: "Admission decisions by decision and by whom (operator, enrollment_ca, import).",
      labelNames: ["decision", "via"],
      registers: [registry],
    });
    this.#requests = new Gauge({
      name: "bmaas_admission_requests",
      help: "Admission requests by state (pending, pending_rekeyed, rejected), as of the last fleet refresh.",
      labelNames: ["state"],
      registers: [registry],
    });
    this.#expired = new Counter({
      name: "bmaas_admission_pending_expired_total",
      help: "Pending admission requests forgotten because their agent stopped asking (--admission-pending-expiry).",
      registers: [registry],
    });
  }

  refused(reason: Refusal): void {
    this.#refusals.inc({ reason });
  }

  decided(d: Decision, n = 1): void {
    if (n > 0) this.#decisions.inc(d, n);
  }

  expired(n: number): void {
    if (n > 0) this.#expired.inc(n);
  }

  requests(c: AdmissionCounts): void {
    this.#requests.set({ state: "pending" }, c.pending);
    this.#requests.set({ state: "pending_rekeyed" }, c.rekeyedPending);
    this.#requests.set({ state: "rejected" }, c.rejected);
  }
}
