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

/** The longest server pushback the agent honours (grpc-retry-pushback-ms). */
export const MAX_PUSHBACK_MS = 10 * 60_000;
/** The shortest: a server saying 0 again and again must not make the agent spin. */
export const MIN_PUSHBACK_MS = AGENT_BACKOFF.initialMs;
/** Up to this fraction is added to a pushback, so that agents told the same do not return together. */
export const PUSHBACK_JITTER = 0.1;

// gRPC status codes after which a server's pushback is honoured.
const UNAVAILABLE = 14;
const RESOURCE_EXHAUSTED = 8;

/**
 * The retry delay a server asked for in the grpc-retry-pushback-ms trailer of
 * a failed call (gRPC A6), for UNAVAILABLE and RESOURCE_EXHAUSTED only: a
 * non-negative decimal integer of milliseconds. Anything else (absent,
 * negative, not a number) is undefined, and the agent's own backoff applies.
 * error is a grpc-js ServiceError, whose metadata holds the trailers.
 */
export function retryPushbackMs(error: unknown): number | undefined {
  const e = error as { code?: unknown; metadata?: { get?: (key: string) => unknown[] } } | undefined;
  if (e?.code !== UNAVAILABLE && e?.code !== RESOURCE_EXHAUSTED) return undefined;
  const first = typeof e.metadata?.get === "function" ? e.metadata.get("grpc-retry-pushback-ms")[0] : undefined;
  const text = typeof first === "string" ? first : Buffer.isBuffer(first) ? first.toString("latin1") : undefined;
  if (text === undefined || !/^\d{1,15}$/.test(text.trim())) return undefined;
  return Number(text.trim());
}

/** The delay for a pushback of ms: at least MIN_PUSHBACK_MS, plus up to 10% jitter, at most MAX_PUSHBACK_MS. */
export function pushbackDelay(ms: number, random: Random = Math.random): number {
  const base = Math.max(MIN_PUSHBACK_MS, ms);
  return Math.min(MAX_PUSHBACK_MS, base * (1 + PUSHBACK_JITTER * random()));
}
