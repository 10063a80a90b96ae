// A circuit breaker in front of the database.
//
// Closed (up): every call goes to the database. The first connection-class
// failure opens it (down): calls fail at once, without dialling, until a
// back-off has passed (50 ms, doubling to 500 ms). Then exactly one call, or
// the breaker's own probe when no call comes, is let through (half-open); if
// it succeeds the breaker closes, otherwise it opens again with the next
// back-off. With a 500 ms cap the first successful call comes well under a
// second after the database is back.
//
// Outcomes of calls admitted before the breaker last opened are ignored: a
// slow query that succeeds after the database went away says nothing about
// now, and a failure of an old call must not double the back-off.

export type DatabaseState = "up" | "down";

export interface BreakerOptions {
  /** Called once per change of state; "down" carries the failure that opened it. */
  onStateChange?: (state: DatabaseState, reason?: string) => void;
  /**
   * Run when the breaker is open, its back-off has passed and no call came to
   * probe the database: so the state goes back to "up" without traffic (health
   * checks need that). Any rejection counts as a failure.
   */
  probe?: () => Promise<unknown>;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  now?: () => number;
}

/** What admit() hands out; given back with the call's outcome. */
export interface BreakerTicket {
  readonly epoch: number;
  readonly probe: boolean;
}

type State = { kind: "closed" } | { kind: "open"; until: number } | { kind: "half-open" };

export class Breaker {
  #state: State = { kind: "closed" };
  /** Incremented every time the breaker opens. */
  #epoch = 0;
  #backoffMs: number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #lastReason = "";
  readonly #initialBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #now: () => number;
  readonly #onStateChange: ((state: DatabaseState, reason?: string) => void) | undefined;
  readonly #probe: (() => Promise<unknown>) | undefined;

  constructor(options: BreakerOptions = {}) {
    this.#initialBackoffMs = options.initialBackoffMs ?? 50;
    this.#maxBackoffMs = options.maxBackoffMs ?? 500;
    this.#backoffMs = this.#initialBackoffMs;
    this.#now = options.now ?? Date.now;
    this.#onStateChange = options.onStateChange;
    this.#probe = options.probe;
  }

  /** True while the database is believed reachable (closed). */
  get up(): boolean {
    return this.#state.kind === "closed";
  }

  /** Why the breaker last opened ("" if never). */
  get lastReason(): string {
    return this.#lastReason;
  }

  /**
   * Lets a call through and returns its ticket, or returns undefined when the
   * call must fail at once (open, or half-open with a probe in flight).
   */
  admit(): BreakerTicket | undefined {
    const s = this.#state;
    if (s.kind === "closed") return { epoch: this.#epoch, probe: false };
    if (s.kind === "open" && this.#now() >= s.until && !this.#stopped) {
      this.#state = { kind: "half-open" };
      return { epoch: this.#epoch, probe: true };
    }
    return undefined;
  }

  /** The call reached the database and it answered. */
  succeeded(ticket: BreakerTicket): void {
    if (ticket.epoch !== this.#epoch || this.#state.kind === "closed") return;
    if (ticket.probe && this.#state.kind === "half-open") this.#close();
  }

  /** The call failed for a connection reason. */
  failed(ticket: BreakerTicket, reason: string): void {
    if (ticket.epoch !== this.#epoch) return;
    if (this.#state.kind === "closed") {
      this.#lastReason = reason;
      this.#backoffMs = this.#initialBackoffMs;
      this.#open();
      this.#emit("down", reason);
    } else if (ticket.probe && this.#state.kind === "half-open") {
      this.#lastReason = reason;
      this.#backoffMs = Math.min(this.#backoffMs * 2, this.#maxBackoffMs);
      this.#open();
    }
  }

  /** The call ended in a way that says nothing of the database (a bug, shutdown). */
  abandoned(ticket: BreakerTicket): void {
    if (ticket.epoch !== this.#epoch || !ticket.probe || this.#state.kind !== "half-open") return;
    // Let the next call probe at once, with the same back-off.
    this.#state = { kind: "open", until: this.#now() };
    this.#schedule(0);
  }

  /** Stops the breaker's own probes (the database is being closed). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #open(): void {
    this.#epoch++;
    this.#state = { kind: "open", until: this.#now() + this.#backoffMs };
    this.#schedule(this.#backoffMs);
  }

  #close(): void {
    this.#state = { kind: "closed" };
    this.#backoffMs = this.#initialBackoffMs;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#emit("up");
  }

  #schedule(delayMs: number): void {
    if (!this.#probe || this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#runProbe(), delayMs);
    this.#timer.unref();
  }

  #runProbe(): void {
    this.#timer = undefined;
    const probe = this.#probe;
    if (!probe || this.#stopped) return;
    const ticket = this.admit();
    // A call is probing already (or the back-off is not over): that call's
    // outcome decides, and reschedules if it fails.
    if (!ticket) {
      if (this.#state.kind === "open") this.#schedule(Math.max(0, this.#state.until - this.#now()));
      return;
    }
    if (!ticket.probe) return;
    probe().then(
      () => this.succeeded(ticket),
      (error: unknown) => this.failed(ticket, error instanceof Error ? error.message : String(error)),
    );
  }

  #emit(state: DatabaseState, reason?: string): void {
    try {
      this.#onStateChange?.(state, reason);
    } catch {
      // A failing observer must not break the database path.
    }
  }
}
