/** Random source in [0, 1); injectable so tests are deterministic. */
export type Random = () => number;

/** base ± fraction·base, uniformly. */
export function jittered(baseMs: number, fraction: number, random: Random = Math.random): number {
  return Math.max(0, baseMs * (1 + fraction * (2 * random() - 1)));
}

export interface BackoffOptions {
  initialMs: number;
  multiplier: number;
  maxMs: number;
  /** ± this fraction of each delay, so that a fleet that failed together does not retry together. */
  jitter: number;
}

/** The Go agents' schedule: 0.5 s, ×1.5 per failure, capped at 60 s, forever. */
export const AGENT_BACKOFF: BackoffOptions = { initialMs: 500, multiplier: 1.5, maxMs: 60_000, jitter: 0.2 };

/** Exponential backoff with jitter; a success resets it. */
export class Backoff {
  #nextMs: number;

  constructor(
    private readonly options: BackoffOptions = AGENT_BACKOFF,
    private readonly random: Random = Math.random,
  ) {
    this.#nextMs = options.initialMs;
  }

  /** The delay before the next attempt; grows the one after. */
  next(): number {
    const base = this.#nextMs;
    this.#nextMs = Math.min(this.options.maxMs, base * this.options.multiplier);
    return Math.min(this.options.maxMs, jittered(base, this.options.jitter, this.random));
  }

  reset(): void {
    this.#nextMs = this.options.initialMs;
  }
}
