import type { ServerHttp2Stream } from "node:http2";
import type { PeerIdentity } from "./peer-identity.js";
import { isOpen, readUnaryMessage, sendMessage, sendStatus, type WireStatus } from "./grpc-wire.js";

// One unary call on the agent listener, as its handler sees it: the caller's
// identity (its connection's), its deadline, its request and a way to answer.
// On the thread that owns the connection it is the HTTP/2 stream itself
// (localAgentCall); from another listener thread, a proxy whose request was
// read there and whose answer goes back there (./agent-listener-threads.ts).

/** What a handler may see and change of the connection a call came on. */
export interface AgentCallConnection {
  readonly identity: PeerIdentity & { kind: "agent" };
  readonly remoteAddress: string;
  /**
   * Set once a heartbeat with the identity's enrollment claim was answered
   * OK: the key is admitted, later heartbeats take the batch path.
   */
  enrolled: boolean;
}

export interface AgentCall {
  readonly connection: AgentCallConnection;
  /** When the caller gives up (Date.now() scale), if it said. */
  readonly deadline: number | undefined;
  /** When the stream arrived (Date.now() scale). */
  readonly startedAt: number;
  /** The request message: at most maxBytes, within timeoutMs; rejects with a WireStatus. */
  readMessage(maxBytes: number, timeoutMs: number): Promise<Uint8Array>;
  /** A refused call's body is discarded as it arrives, never kept. */
  discardBody(): void;
  /** True while the caller can still be answered. */
  isOpen(): boolean;
  /** Answers with one message; whether the caller got it (known at once here, later from another thread). */
  respond(message: Uint8Array): boolean | Promise<boolean>;
  /** Answers with a status. */
  fail(status: WireStatus): boolean | Promise<boolean>;
  /** Called once the stream is closed, answered or not. */
  onClose(listener: () => void): void;
}

/** The call as its HTTP/2 stream, on the thread that owns its connection. */
export function localAgentCall(
  stream: ServerHttp2Stream,
  connection: AgentCallConnection,
  deadline: number | undefined,
  startedAt: number,
): AgentCall {
  return {
    connection,
    deadline,
    startedAt,
    readMessage: (maxBytes, timeoutMs) => readUnaryMessage(stream, maxBytes, timeoutMs),
    discardBody: () => void stream.resume(),
    isOpen: () => isOpen(stream),
    respond: (message) => sendMessage(stream, message),
    fail: (status) => sendStatus(stream, status),
    onClose: (listener) => void (stream.closed ? queueMicrotask(listener) : stream.once("close", listener)),
  };
}
