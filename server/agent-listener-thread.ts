import { X509Certificate } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";
import { pino } from "pino";
import type { AgentCall } from "./agent-call.js";
import { listenForAgents, type AgentListener } from "./agent-listener.js";
import {
  fromStatusData,
  sharedCounts,
  toStatusData,
  Outbox,
  type Answer,
  type AgentThreadData,
  type FromAgentThread,
  type StatusData,
  type ToAgentThread,
} from "./agent-thread-protocol.js";
import { closeUnused } from "./reuseport.js";

// One agent listener thread (started by ./agent-listener-threads.ts): the
// same listener as the main thread's, on its own socket of the port's
// SO_REUSEPORT group. It does TLS, HTTP/2, the identity and the request's
// bytes for its connections; every call then goes to the main thread, which
// decides and answers, and the answer comes back to the call's own stream.
// A connection and its identity never leave this thread.

const data = workerData as AgentThreadData;
const port = parentPort!;
const post = (message: FromAgentThread) => port.postMessage(message);
const logger = pino({ level: data.logLevel, base: { svc: "bmaas-server", thread: data.index } });

type Batch = Extract<FromAgentThread, { kind: "batch" }>;
const outbox = new Outbox<Batch>(
  () => ({ kind: "batch", calls: [], gone: [], delivered: [], refused: [] }),
  (batch) => post(batch),
);

/** Calls forwarded and not yet answered, by id. */
const pending = new Map<number, AgentCall>();
let nextId = 1;

function forward(call: AgentCall): void {
  const id = nextId++;
  pending.set(id, call);
  call.onClose(() => {
    if (pending.delete(id)) outbox.next.gone.push(id);
  });
  const bodyBy = Math.min(call.deadline ?? Infinity, Date.now() + data.bodyTimeoutMs);
  const send = (read: { body: Uint8Array } | { bodyError: StatusData }) => {
    const { identity } = call.connection;
    outbox.next.calls.push({
      id,
      ...read,
      open: pending.has(id),
      deadline: call.deadline,
      startedAt: call.startedAt,
      // Copies: a Buffer may be a view of a larger pool, which a message would copy whole.
      publicKey: new Uint8Array(identity.publicKey),
      keyFingerprint: identity.keyFingerprint,
      ...(identity.enrollment && { enrollment: { ...identity.enrollment } }),
      remoteAddress: call.connection.remoteAddress,
      enrolled: call.connection.enrolled,
    });
  };
  call.readMessage(data.maxRequestBytes, bodyBy - Date.now()).then(
    (body) => send({ body: new Uint8Array(body) }),
    (e: unknown) => send({ bodyError: toStatusData(e) }),
  );
}

function answer(a: Answer): void {
  const call = pending.get(a.id);
  pending.delete(a.id);
  let sent = false;
  if (call) {
    const got = a.status ? call.fail(fromStatusData(a.status)) : call.respond(a.message ?? new Uint8Array());
    // Local calls know at once.
    sent = got === true;
  }
  // Admitted by the database whether or not the caller is still there to hear it.
  if (a.enrolled && call) call.connection.enrolled = true;
  outbox.next.delivered.push({ id: a.id, sent });
}

let listener: AgentListener | undefined;
port.on("message", (m: ToAgentThread) => {
  if (m.kind === "answers") {
    for (const a of m.answers) answer(a);
  } else if (m.kind === "close") {
    void (listener?.close(m.graceMs) ?? Promise.resolve()).then(() => {
      // The last answers' deliveries first: after "closed" the thread ends.
      outbox.flush();
      post({ kind: "closed" });
    });
  }
});

try {
  listener = await listenForAgents({
    address: data.address,
    fd: data.fd,
    cert: data.cert,
    key: data.key,
    enrollmentCas: data.enrollmentCas.map(({ pem, name }) => ({ cert: new X509Certificate(pem), name })),
    paths: new Set(data.paths),
    handler: forward,
    onRefused: (code) => outbox.next.refused.push(code),
    limits: data.limits,
    logger,
    counts: sharedCounts(data.counts),
  });
  post({ kind: "ready" });
} catch (err) {
  // Node did not take the socket (listenForAgents fails before listening or
  // in it, never after): close it, or the kernel would keep giving it a share
  // of the port's connections that nobody accepts.
  closeUnused([data.fd]);
  post({ kind: "failed", message: (err as Error).message });
}
