import type { ConnectionCounts } from "./agent-connections.js";
import type { AgentListenerLimits } from "./agent-listener.js";
import { Code, WireStatus } from "./grpc-wire.js";
import type { ListenAddress } from "./listen.js";

// What the main thread and an agent listener thread tell each other
// (./agent-listener-threads.ts, ./agent-listener-thread.ts). A listener
// thread owns its connections: TLS, HTTP/2, identity, the request's bytes.
// The main thread owns everything after: admission, the heartbeat queue, the
// database, metrics. Messages go in batches, one per event-loop turn.

/** workerData of a listener thread. */
export interface AgentThreadData {
  index: number;
  /** Its own listening socket of the port's SO_REUSEPORT group. */
  fd: number;
  address: ListenAddress;
  cert: string;
  key: string;
  enrollmentCas: { pem: string; name: string }[];
  paths: string[];
  limits: AgentListenerLimits;
  /** Read here before the call goes to the main thread: the handler's own limits. */
  maxRequestBytes: number;
  bodyTimeoutMs: number;
  logLevel: string;
  /** Int32Array over it: this thread's ConnectionCounts (sharedCounts). */
  counts: SharedArrayBuffer;
}

/** A status as the wire sends it (WireStatus does not cross threads as itself). */
export interface StatusData {
  code: number;
  message: string;
  trailers: Record<string, string>;
}

/** What crosses threads of a status (anything else thrown becomes INTERNAL). */
export function toStatusData(e: unknown): StatusData {
  return e instanceof WireStatus ? { code: e.code, message: e.message, trailers: e.trailers } : { code: Code.INTERNAL, message: "internal error", trailers: {} };
}

export function fromStatusData(d: StatusData): WireStatus {
  return new WireStatus(d.code as Code, d.message, d.trailers);
}

/** A call whose request was read on a listener thread. */
export interface ForwardedCall {
  id: number;
  /** The request message, or why it could not be read (too large, cut short, late). */
  body?: Uint8Array;
  bodyError?: StatusData;
  /** False when the caller left before the call was forwarded. */
  open: boolean;
  deadline: number | undefined;
  startedAt: number;
  publicKey: Uint8Array;
  keyFingerprint: string;
  enrollment?: { machineId: string; ca: string };
  remoteAddress: string;
  enrolled: boolean;
}

/** Listener thread → main thread. */
export type FromAgentThread =
  | { kind: "ready" }
  | { kind: "failed"; message: string }
  | { kind: "closed" }
  | {
      kind: "batch";
      calls: ForwardedCall[];
      /** Calls whose caller left before the answer. */
      gone: number[];
      /** Whether each answer reached its stream. */
      delivered: { id: number; sent: boolean }[];
      /** Calls refused by the listener itself (bad headers, no identity), by code. */
      refused: number[];
    };

/** An answer to a forwarded call. */
export interface Answer {
  id: number;
  message?: Uint8Array;
  status?: StatusData;
  /** The call's connection has been admitted by its enrollment claim. */
  enrolled?: boolean;
}

/** Main thread → listener thread. */
export type ToAgentThread = { kind: "answers"; answers: Answer[] } | { kind: "close"; graceMs: number };

const COUNT_FIELDS = ["open", "waiting", "handshaking", "authenticated", "refusedAtAccept", "handshakeFailures", "abandoned"] as const satisfies readonly (keyof ConnectionCounts)[];

/** Shared memory for one thread's counts. */
export function countsBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(COUNT_FIELDS.length * Int32Array.BYTES_PER_ELEMENT);
}

/**
 * ConnectionCounts kept in shared memory: the listener thread writes them
 * (one writer per field), the main thread reads them for metrics and pacing.
 */
export function sharedCounts(buffer: SharedArrayBuffer): ConnectionCounts {
  const cells = new Int32Array(buffer);
  const counts = {} as ConnectionCounts;
  COUNT_FIELDS.forEach((field, i) =>
    Object.defineProperty(counts, field, {
      get: () => Atomics.load(cells, i),
      set: (v: number) => void Atomics.store(cells, i, v),
      enumerable: true,
    }),
  );
  return counts;
}

/** Counts that read as the sum of several (each thread's), live. */
export function summedCounts(parts: () => readonly ConnectionCounts[]): ConnectionCounts {
  const counts = {} as ConnectionCounts;
  for (const field of COUNT_FIELDS) {
    Object.defineProperty(counts, field, {
      get: () => parts().reduce((sum, p) => sum + p[field], 0),
      set: () => {
        throw new Error("summed connection counts are read-only");
      },
      enumerable: true,
    });
  }
  return counts;
}

/**
 * Collects messages and sends them as one, once per event-loop turn: a
 * thousand calls a second cost a few hundred messages, not thousands.
 */
export class Outbox<T> {
  #batch: T | undefined;
  constructor(
    private readonly empty: () => T,
    private readonly send: (batch: T) => void,
  ) {}

  /** The batch being filled; sent after this turn's I/O. */
  get next(): T {
    if (!this.#batch) {
      this.#batch = this.empty();
      setImmediate(() => this.flush());
    }
    return this.#batch;
  }

  /** Sends what is collected now (before a message that must come after it). */
  flush(): void {
    const batch = this.#batch;
    this.#batch = undefined;
    if (batch) this.send(batch);
  }
}
