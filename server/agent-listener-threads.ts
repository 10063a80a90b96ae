import { Worker } from "node:worker_threads";
import { workerEntry } from "../lib/worker-entry.js";
import type { AgentCall, AgentCallConnection } from "./agent-call.js";
import type { ConnectionCounts } from "./agent-connections.js";
import { DEFAULT_AGENT_LISTENER_LIMITS, listenForAgents, type AgentListener, type AgentListenerLimits, type AgentListenerOptions } from "./agent-listener.js";
import {
  countsBuffer,
  fromStatusData,
  Outbox,
  sharedCounts,
  summedCounts,
  toStatusData,
  type Answer,
  type AgentThreadData,
  type ForwardedCall,
  type FromAgentThread,
  type ToAgentThread,
} from "./agent-thread-protocol.js";
import { Code, WireStatus } from "./grpc-wire.js";
import { closeUnused, openSharedPort, shareInheritedSocket } from "./reuseport.js";
import { certificateGuard } from "./tls-certificate-guard.js";
import { usableCores } from "./usable-cores.js";

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
  /** A listening socket handed over by the supervisor (./inherited-sockets.ts), used instead of address. */
  inheritedFd?: number;
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
 * threads buy; the other half of the cores is left to the database. Cores
 * are those the process may use, a container's CPU quota included.
 */
export function defaultAgentThreads(cores = usableCores()): number {
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
  #finished = false;
  #enrolled = false;
  #delivered: ((sent: boolean) => void) | undefined;
  readonly #closeListeners: (() => void)[] = [];

  constructor(
    private readonly f: ForwardedCall,
    /** Posts the answer to the call's thread; false when that thread is gone. */
    private readonly answer: (a: Answer) => boolean,
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

  readMessage(maxBytes: number): Promise<Uint8Array> {
    const e = this.f.bodyError;
    if (e) return Promise.reject(fromStatusData(e));
    const body = this.f.body ?? new Uint8Array();
    // Read on its thread with the same limit (ThreadedListenerOptions.maxRequestBytes).
    if (body.length > maxBytes) return Promise.reject(new WireStatus(Code.RESOURCE_EXHAUSTED, `request of ${body.length} bytes is larger than the limit of ${maxBytes}`));
    return Promise.resolve(body);
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
    return this.#send({ id: this.f.id, status: toStatusData(status) });
  }

  onClose(listener: () => void): void {
    if (this.#finished) queueMicrotask(listener);
    else this.#closeListeners.push(listener);
  }

  #send(a: Answer): boolean | Promise<boolean> {
    if (this.#answered) return false;
    this.#answered = true;
    // A caller known to be gone hears nothing; no message for it.
    if (!this.#open || !this.answer(this.#enrolled ? { ...a, enrolled: true } : a)) {
      this.#finish();
      return false;
    }
    return new Promise((resolve) => (this.#delivered = resolve));
  }

  /** The caller left (or its thread died): an answer, sent or to come, does not reach it. */
  gone(): void {
    this.#open = false;
    this.delivered(false);
  }

  /** Its thread says whether the answer reached the stream. */
  delivered(sent: boolean): void {
    this.#delivered?.(sent);
    this.#delivered = undefined;
    this.#finish();
  }

  #finish(): void {
    this.#finished = true;
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
  #closing: Promise<void> | undefined;
  alive = true;

  constructor(data: AgentThreadData, options: ThreadedListenerOptions) {
    this.counts = sharedCounts(data.counts);
    this.worker = new Worker(workerEntry(new URL("./agent-listener-thread.js", import.meta.url)), { workerData: data });
    this.#outbox = new Outbox<Extract<ToAgentThread, { kind: "answers" }>>(
      () => ({ kind: "answers", answers: [] }),
      (batch) => this.alive && this.worker.postMessage(batch),
    );
    const onRefused = options.onRefused ?? (() => {});
    const post = (a: Answer) => {
      if (this.alive) this.#outbox.next.answers.push(a);
      return this.alive;
    };
    this.ready = new Promise((resolve, reject) => {
      this.worker.on("message", (m: FromAgentThread) => {
        if (m.kind === "batch") {
          for (const f of m.calls) {
            const call = new ForwardedAgentCall(f, post);
            // Kept until answered and delivered, or gone.
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
        // Its connections are gone: nothing of theirs may still be written.
        for (const call of [...this.#calls.values()]) call.gone();
        this.#closed?.();
      });
    });
    this.ready.catch(() => {});
  }

  /** Closes its listener (graceful for graceMs, a little more at most), then ends the thread. */
  close(graceMs: number): Promise<void> {
    this.#closing ??= (async () => {
      if (this.alive) {
        const closed = new Promise<void>((resolve) => (this.#closed = resolve));
        this.#outbox.flush();
        this.worker.postMessage({ kind: "close", graceMs } satisfies ToAgentThread);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs + 5_000)))]);
        clearTimeout(timer);
      }
      await this.worker.terminate();
    })();
    return this.#closing;
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
    const listener = await listenForAgents({ ...options, ...(options.inheritedFd !== undefined && { fd: options.inheritedFd }) });
    return { ...listener, threads: 1, byThread: [listener.counts] };
  };
  if (options.threads <= 1) return single();
  // An inherited socket has one accept queue, which every thread takes from;
  // otherwise each thread has a socket of its own in a SO_REUSEPORT group.
  const shared = options.inheritedFd !== undefined ? shareInheritedSocket(options.inheritedFd, options.threads) : openSharedPort(options.address, options.threads, "agents");
  if (!shared.fds) {
    logger.warn({ reason: shared.error }, "agent listener on the main thread only");
    return single();
  }
  const [mainFd, ...otherFds] = shared.fds as [number, ...number[]];
  const limits = threadShare({ ...DEFAULT_AGENT_LISTENER_LIMITS, ...options.limits }, options.threads);
  // The native certificate guard is installed once per process, by the
  // first thread to ask: this one, before any other thread does handshakes.
  if (limits.clientCertificateCheck === "native") certificateGuard();
  // The other threads listen first and the main thread last, so that when
  // the port first takes connections every thread is there to accept its
  // share (a socket that is bound but not yet listening is given none).
  const threads: ListenerThread[] = [];
  let main: AgentListener;
  const closeThreads = (graceMs: number) => Promise.all(threads.map((t) => t.close(graceMs)));
  try {
    for (const [i, fd] of otherFds.entries()) {
      try {
        threads.push(new ListenerThread(threadData(options, limits, i + 1, fd), options));
      } catch (err) {
        // This fd and the ones after it stay ours: no thread took them.
        closeUnused(otherFds.slice(i));
        throw err;
      }
    }
    await Promise.all(threads.map((t) => t.ready));
    main = await listenForAgents({ ...options, fd: mainFd, limits });
  } catch (err) {
    // The main fd too, whether its listen failed or never began (already closed is fine).
    await closeThreads(0);
    closeUnused([mainFd]);
    throw err;
  }
  const closeAll = (graceMs: number) => Promise.all([main.close(graceMs), closeThreads(graceMs)]).then(() => {});
  const byThread = [main.counts, ...threads.map((t) => t.counts)];
  return {
    server: main.server,
    threads: options.threads,
    byThread,
    counts: summedCounts(() => [main.counts, ...threads.filter((t) => t.alive).map((t) => t.counts)]),
    close: closeAll,
  };
}

function threadData(options: ThreadedListenerOptions, limits: AgentListenerLimits, index: number, fd: number): AgentThreadData {
  return {
    index,
    fd,
    address: options.address,
    cert: options.cert,
    key: options.key,
    enrollmentCas: (options.enrollmentCas ?? []).map((ca) => ({ pem: ca.cert.toString(), name: ca.name })),
    paths: [...options.paths],
    limits,
    maxRequestBytes: options.maxRequestBytes,
    bodyTimeoutMs: options.bodyTimeoutMs,
    logLevel: options.logger.level,
    counts: countsBuffer(),
  };
}
