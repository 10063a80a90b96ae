import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { workerEntry } from "../lib/worker-entry.js";
import type { AgentCall, AgentCallConnection } from "./agent-call.js";
import type { ConnectionCounts } from "./agent-connections.js";
import { DEFAULT_AGENT_LISTENER_LIMITS, listenForAgents, type AgentListener, type AgentListenerLimits, type AgentListenerOptions } from "./agent-listener.js";
import {
  countsBuffer,
  Outbox,
  sharedCounts,
  summedCounts,
  type Answer,
  type AgentThreadData,
  type ForwardedCall,
  type FromAgentThread,
  type ToAgentThread,
} from "./agent-thread-protocol.js";
import { WireStatus, type Code } from "./grpc-wire.js";
import { openSharedPort } from "./reuseport.js";

// The agent listener on several threads, one port. TLS handshakes bound how
// fast a fleet (re)connects, and Node does a thread's on one core: a 10,000-
// agent reconnect storm kept one core busy while the other had room. Each
// listener thread has its own socket of the port's SO_REUSEPORT group (the
// kernel spreads connections over them by address and port) and does TLS,
// HTTP/2, the identity and the request's bytes for its connections; the main
// thread is one of them, and decides every call: admission, the heartbeat
// queue, the database, metrics. A connection's identity stays on the thread
// that accepted it; the main thread sees a copy with each call.

export interface ThreadedListenerOptions extends AgentListenerOptions {
  /** Listener threads, the main thread included (1: the main thread alone; see defaultAgentThreads). */
  threads: number;
  /** The handler's request limits, applied where the request is read. */
  maxRequestBytes: number;
  bodyTimeoutMs: number;
}

export interface ThreadedAgentListener extends AgentListener {
  /** Threads that listen (1 when SO_REUSEPORT sockets could not be had). */
  readonly threads: number;
  /** Each thread's own counts, the main thread's first (counts is their sum). */
  readonly byThread: readonly ConnectionCounts[];
}

/**
 * The default: one thread below 4 cores, else half the cores, at most 4.
 * Measured on 2 cores shared with the load generator (README, benchmark): 2
 * threads connected 10,000 agents to the empty handler 10–20% faster and
 * raised its back-to-back rate by a quarter or more, but heartbeats through
 * the database went no faster (the main thread's database work and the
 * database took the rest of the machine), and RSS grew by ~130 MiB (a second
 * V8 heap and malloc arena), which PGlite's 1 GiB budget had no room for.
 * With cores to spare, handshakes (one core's worth per thread) are what
 * threads buy; the other half of the cores is left to the database.
 */
export function defaultAgentThreads(cores = availableParallelism()): number {
  return cores < 4 ? 1 : Math.min(4, Math.floor(cores / 2));
}

/**
 * Limits that bound the whole listener, as one thread's share: the kernel
 * spreads connections evenly over the threads by their addresses and ports,
 * so each enforces 1/threads of them (rounded up). Handshakes in progress are
 * per thread by nature (they share its core).
 */
function threadShare(limits: AgentListenerLimits, threads: number): AgentListenerLimits {
  const share = (n: number) => Math.ceil(n / threads);
  return { ...limits, maxConnections: share(limits.maxConnections), maxConnectionsPerAddress: share(limits.maxConnectionsPerAddress) };
}

/** A call read on another thread, as the main thread's handler sees it. */
class ForwardedAgentCall implements AgentCall {
  readonly connection: AgentCallConnection;
  readonly deadline: number | undefined;
  readonly startedAt: number;
  #open: boolean;
  #answered = false;
  #enrolled = false;
  #delivered: ((sent: boolean) => void) | undefined;
  readonly #closeListeners: (() => void)[] = [];

  constructor(
    private readonly f: ForwardedCall,
    private readonly answer: (a: Answer) => void,
  ) {
    this.#open = f.open;
    this.deadline = f.deadline;
    this.startedAt = f.startedAt;
    const self = this;
    this.connection = {
      identity: { kind: "agent", publicKey: f.publicKey, keyFingerprint: f.keyFingerprint, ...(f.enrollment && { enrollment: f.enrollment }) },
      remoteAddress: f.remoteAddress,
      get enrolled() {
        return f.enrolled || self.#enrolled;
      },
      set enrolled(v: boolean) {
        self.#enrolled = v;
      },
    };
  }

  readMessage(): Promise<Uint8Array> {
    const e = this.f.bodyError;
    return e ? Promise.reject(new WireStatus(e.code as Code, e.message, e.trailers)) : Promise.resolve(this.f.body ?? new Uint8Array());
  }

  discardBody(): void {
    // Read already, on its thread.
  }

  isOpen(): boolean {
    return this.#open && !this.#answered;
  }

  respond(message: Uint8Array): boolean | Promise<boolean> {
    return this.#send({ id: this.f.id, message });
  }

  fail(status: WireStatus): boolean | Promise<boolean> {
    return this.#send({ id: this.f.id, status: { code: status.code, message: status.message, trailers: status.trailers } });
  }

  onClose(listener: () => void): void {
    this.#closeListeners.push(listener);
  }

  #send(a: Answer): boolean | Promise<boolean> {
    if (this.#answered) return false;
    this.#answered = true;
    this.answer(this.#enrolled ? { ...a, enrolled: true } : a);
    return new Promise((resolve) => (this.#delivered = resolve));
  }

  /** The caller left. */
  gone(): void {
    this.#open = false;
    this.#closed();
  }

  /** Its thread says whether the answer reached the stream (false for every call of a thread that died). */
  delivered(sent: boolean): void {
    this.#delivered?.(sent);
    this.#delivered = undefined;
    this.#closed();
  }

  #closed(): void {
    for (const l of this.#closeListeners.splice(0)) l();
  }
}

/** The main thread's end of one listener thread. */
class ListenerThread {
  readonly worker: Worker;
  readonly counts: ConnectionCounts;
  readonly #calls = new Map<number, ForwardedAgentCall>();
  readonly #outbox: Outbox<Extract<ToAgentThread, { kind: "answers" }>>;
  readonly ready: Promise<void>;
  #closed: (() => void) | undefined;
  alive = true;

  constructor(data: AgentThreadData, options: ThreadedListenerOptions) {
    this.counts = sharedCounts(data.counts);
    this.worker = new Worker(workerEntry(new URL("./agent-listener-thread.js", import.meta.url)), { workerData: data });
    this.#outbox = new Outbox<Extract<ToAgentThread, { kind: "answers" }>>(
      () => ({ kind: "answers", answers: [] }),
      (batch) => this.worker.postMessage(batch),
    );
    const onRefused = options.onRefused ?? (() => {});
    this.ready = new Promise((resolve, reject) => {
      this.worker.on("message", (m: FromAgentThread) => {
        if (m.kind === "batch") {
          for (const f of m.calls) {
            const call = new ForwardedAgentCall(f, (a) => this.#outbox.next.answers.push(a));
            this.#calls.set(f.id, call);
            call.onClose(() => this.#calls.delete(f.id));
            options.handler(call);
          }
          for (const id of m.gone) this.#calls.get(id)?.gone();
          for (const d of m.delivered) this.#calls.get(d.id)?.delivered(d.sent);
          for (const code of m.refused) onRefused(code as Code);
        } else if (m.kind === "ready") {
          resolve();
        } else if (m.kind === "failed") {
          reject(new Error(m.message));
        } else if (m.kind === "closed") {
          this.#closed?.();
        }
      });
      this.worker.once("error", (err) => {
        options.logger.error({ err, thread: data.index }, "agent listener thread failed");
        reject(err);
      });
      this.worker.once("exit", () => {
        this.alive = false;
        reject(new Error(`agent listener thread ${data.index} exited`));
        for (const call of this.#calls.values()) call.delivered(false);
        this.#closed?.();
      });
    });
    this.ready.catch(() => {});
  }

  /** Closes its listener (graceful for graceMs), then ends the thread. */
  async close(graceMs: number): Promise<void> {
    if (this.alive) {
      const closed = new Promise<void>((resolve) => (this.#closed = resolve));
      this.worker.postMessage({ kind: "close", graceMs } satisfies ToAgentThread);
      await closed;
    }
    await this.worker.terminate();
  }
}

/**
 * The agent listener on `threads` threads sharing one port, the main thread
 * included; on the main thread alone when threads is 1 or the SO_REUSEPORT
 * addon was not built (logged).
 */
export async function listenForAgentsOnThreads(options: ThreadedListenerOptions): Promise<ThreadedAgentListener> {
  const { logger } = options;
  const single = async (): Promise<ThreadedAgentListener> => {
    const listener = await listenForAgents(options);
    return { ...listener, threads: 1, byThread: [listener.counts] };
  };
  if (options.threads <= 1) return single();
  const shared = openSharedPort(options.address, options.threads, "agents");
  if (!shared.fds) {
    logger.warn({ reason: shared.error }, "agent listener on the main thread only");
    return single();
  }
  const [mainFd, ...otherFds] = shared.fds as [number, ...number[]];
  const limits = threadShare({ ...DEFAULT_AGENT_LISTENER_LIMITS, ...options.limits }, options.threads);
  // The main thread's first: it installs the native certificate guard that
  // every thread's handshakes then use.
  const main = await listenForAgents({ ...options, fd: mainFd, limits });
  const threads = otherFds.map(
    (fd, i) =>
      new ListenerThread(
        {
          index: i + 1,
          fd,
          address: options.address,
          cert: options.cert,
          key: options.key,
          enrollmentCas: (options.enrollmentCas ?? []).map((ca) => ({ pem: ca.cert.toString(), name: ca.name })),
          paths: [...options.paths],
          limits,
          maxRequestBytes: options.maxRequestBytes,
          bodyTimeoutMs: options.bodyTimeoutMs,
          logLevel: logger.level,
          counts: countsBuffer(),
        },
        options,
      ),
  );
  const closeAll = (graceMs: number) => Promise.all([main.close(graceMs), ...threads.map((t) => t.close(graceMs))]).then(() => {});
  try {
    await Promise.all(threads.map((t) => t.ready));
  } catch (err) {
    await closeAll(0);
    throw err;
  }
  const byThread = [main.counts, ...threads.map((t) => t.counts)];
  return {
    server: main.server,
    threads: options.threads,
    byThread,
    counts: summedCounts(() => [main.counts, ...threads.filter((t) => t.alive).map((t) => t.counts)]),
    close: closeAll,
  };
}
