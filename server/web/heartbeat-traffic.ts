// Heartbeat traffic over the last minutes. The database keeps only each
// machine's latest heartbeat, so traffic is sampled here, from this server's
// own count of heartbeats it took: a replica shows its own share.

export interface TrafficSample {
  /** End of the slot. */
  at: Date;
  heartbeats: number;
}

export class HeartbeatTraffic {
  readonly #slots: TrafficSample[] = [];
  #last: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    /** Heartbeats taken since the server started (a growing count). */
    private readonly taken: () => number,
    readonly slotMs = 10_000,
    readonly keep = 60,
  ) {
    this.#last = taken();
  }

  start(): this {
    this.#timer = setInterval(() => this.sample(), this.slotMs);
    this.#timer.unref();
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Closes the current slot (the timer calls this; tests may too). */
  sample(now = new Date()): void {
    const total = this.taken();
    this.#slots.push({ at: now, heartbeats: Math.max(0, total - this.#last) });
    this.#last = total;
    if (this.#slots.length > this.keep) this.#slots.shift();
  }

  /** Closed slots, oldest first, and what the open slot has so far. */
  samples(): { closed: readonly TrafficSample[]; current: number } {
    return { closed: [...this.#slots], current: Math.max(0, this.taken() - this.#last) };
  }
}
