import { createServer as createH2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { Server, Socket } from "node:net";
import type { Logger } from "pino";
import type { EnrollmentCa } from "./enrollment-ca.js";
import { ConnectionGate, DEFAULT_CONNECTION_LIMITS, connectionOf, type AgentConnection, type ConnectionCounts, type ConnectionLimits } from "./agent-connections.js";
import { localAgentCall, type AgentCall, type AgentCallConnection } from "./agent-call.js";
import { checkRequestHeaders, Code, parseGrpcTimeout, sendStatus, WireStatus } from "./grpc-wire.js";
import { listenWithHandles } from "./accept-sockets.js";
import type { ListenAddress } from "./listen.js";

// The public (agent) listener. Agents are untrusted and authenticate with a
// self-signed certificate, so TLS requests a client certificate without
// verifying its chain, and the identity is decided once per connection
// (./agent-connections.ts). HTTP/2 and gRPC's unary framing are served here
// directly (./grpc-wire.ts says why not through grpc-js): a stream from an
// unauthenticated connection is answered UNAUTHENTICATED from its headers
// alone — its body is never read — and that connection is then closed.

export interface AgentListenerLimits extends ConnectionLimits {
  /** Concurrent streams one connection may open (an agent needs one). */
  maxStreamsPerConnection: number;
  /** A connection with no stream for this long is closed (GOAWAY). */
  idleTimeoutMs: number;
  /** Connections are closed gracefully after this long (±10% jitter), 0: never. */
  maxConnectionAgeMs: number;
  /** A quiet connection is pinged this often; one that does not answer in keepaliveTimeoutMs is dropped. */
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
}

export const DEFAULT_AGENT_LISTENER_LIMITS: AgentListenerLimits = {
  ...DEFAULT_CONNECTION_LIMITS,
  maxStreamsPerConnection: 4,
  idleTimeoutMs: 600_000,
  maxConnectionAgeMs: 0,
  keepaliveMs: 120_000,
  keepaliveTimeoutMs: 20_000,
};

/** Serves a call whose transport identity is an agent key; must answer it. */
export type AgentCallHandler = (call: AgentCall) => void;
/** Told of every call refused before the handler, for metrics. */
export type RefusalObserver = (code: Code) => void;

export interface AgentListenerOptions {
  address: ListenAddress;
  /** Listen on this socket (one of a SO_REUSEPORT group, ./reuseport.ts) instead of opening one on address. */
  fd?: number;
  cert: string;
  key: string;
  /** CAs whose certificates admit agents automatically (./enrollment-ca.ts). */
  enrollmentCas?: readonly EnrollmentCa[];
  paths: ReadonlySet<string>;
  handler: AgentCallHandler;
  onRefused?: RefusalObserver;
  limits?: Partial<AgentListenerLimits>;
  logger: Logger;
  /** Where the connection gate counts (default: an object of its own). */
  counts?: ConnectionCounts;
}

export interface AgentListener {
  server: Server;
  counts: ConnectionCounts;
  /** Stops accepting; closes every connection gracefully, then forcibly after graceMs. */
  close(graceMs: number): Promise<void>;
}

interface SessionState {
  connection: AgentConnection;
  /** Streams open now; a session is idle only with none. */
  streams: number;
  lastActivity: number;
  closeAt: number;
  pingSentAt: number;
}

export async function listenForAgents(options: AgentListenerOptions): Promise<AgentListener> {
  const { logger, handler, paths } = options;
  const limits: AgentListenerLimits = { ...DEFAULT_AGENT_LISTENER_LIMITS, ...options.limits };
  const onRefused = options.onRefused ?? (() => {});
  const sessions = new Map<Http2Session, SessionState>();

  const h2 = createH2Server({
    settings: { maxConcurrentStreams: limits.maxStreamsPerConnection, maxHeaderListSize: 16 * 1024, enablePush: false },
    maxHeaderListPairs: 64,
    maxOutstandingPings: 4,
    // Per session, in MB: headers, window buffers and queued frames together.
    maxSessionMemory: 4,
    // DATA a client keeps sending on a stream already answered and closed
    // (a refused upload) counts as "invalid"; past this Node tears the whole
    // session down with ENHANCE_YOUR_CALM, losing answers still in flight.
    maxSessionInvalidFrames: 20_000,
  });

  // After its answer, a refused connection gets a moment to read it, then goes.
  // (No GOAWAY first: Node then drops the answers of streams still uploading.)
  const refuseAndClose = (connection: AgentConnection) => {
    setTimeout(() => connection.kill(), 1000).unref();
  };

  h2.on("session", (session: Http2Session) => {
    const connection = session.socket ? connectionOf(session.socket as Socket) : undefined;
    session.on("error", (err) => logger.debug({ err: err.message }, "agent HTTP/2 session error"));
    if (!connection) {
      session.destroy();
      return;
    }
    const now = Date.now();
    const jitter = 1 + (Math.random() * 0.2 - 0.1);
    sessions.set(session, {
      connection,
      streams: 0,
      lastActivity: now,
      closeAt: limits.maxConnectionAgeMs > 0 ? now + limits.maxConnectionAgeMs * jitter : Infinity,
      pingSentAt: 0,
    });
    session.once("close", () => sessions.delete(session));
    const destroySocket = connection.kill;
    connection.kill = () => {
      session.destroy();
      destroySocket();
    };
    // No session.setTimeout: Node keeps a destroyed session (and its socket)
    // alive until such a timer fires. The sweep below does idle timeouts.
  });

  h2.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on("error", () => {});
    const state = sessions.get(stream.session!);
    const refuse = (status: WireStatus) => {
      onRefused(status.code);
      sendStatus(stream, status);
    };
    if (!state) return refuse(new WireStatus(Code.UNAVAILABLE, "connection closing"));
    const startedAt = Date.now();
    state.lastActivity = startedAt;
    state.streams++;
    stream.once("close", () => {
      state.streams--;
      state.lastActivity = Date.now();
    });
    const connection = state.connection;
    // The method is public knowledge: an unknown one is UNIMPLEMENTED for anybody.
    const bad = checkRequestHeaders(headers, paths);
    if (bad) {
      stream.resume();
      return refuse(bad);
    }
    if (connection.identity.kind !== "agent") {
      // Answered from the headers alone; the body is never read or decoded.
      logger.debug({ peer: connection.remoteAddress, reason: connection.identity.reason }, "agent refused: transport");
      // Whatever it still uploads is discarded as it arrives (never kept),
      // so that the stream ends normally and the answer reaches the client.
      stream.resume();
      refuse(new WireStatus(Code.UNAUTHENTICATED, "a TLS connection with exactly one Ed25519 client certificate is required"));
      refuseAndClose(connection);
      return;
    }
    const timeout = parseGrpcTimeout(headers["grpc-timeout"]);
    handler(localAgentCall(stream, connection as AgentCallConnection, timeout === undefined ? undefined : startedAt + timeout, startedAt));
  });

  // One sweep for every connection instead of timers per connection: maximum
  // age, and keepalive pings for quiet ones (a peer that vanished without a
  // FIN would otherwise hold its slot until the idle timeout).
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [session, s] of sessions) {
      if (session.closed || session.destroyed) continue;
      if (s.streams === 0 && now - s.lastActivity > limits.idleTimeoutMs) {
        session.close();
        setTimeout(() => s.connection.kill(), 1000).unref();
      } else if (now >= s.closeAt) {
        // GOAWAY: calls in flight finish, the agent reconnects for the next one.
        session.close();
        setTimeout(() => s.connection.kill(), limits.keepaliveTimeoutMs).unref();
      } else if (s.pingSentAt > 0 && now - s.pingSentAt > limits.keepaliveTimeoutMs) {
        s.connection.kill();
      } else if (s.pingSentAt === 0 && now - s.lastActivity > limits.keepaliveMs) {
        s.pingSentAt = now;
        session.ping((err) => {
          if (err) return s.connection.kill();
          s.pingSentAt = 0;
          s.lastActivity = Date.now();
        });
      }
    }
  }, Math.max(100, Math.min(5000, limits.keepaliveMs / 4, limits.idleTimeoutMs / 4, limits.maxConnectionAgeMs > 0 ? limits.maxConnectionAgeMs / 4 : 5000)));
  sweep.unref();

  const gate = new ConnectionGate(
    limits,
    { cert: options.cert, key: options.key, enrollmentCas: options.enrollmentCas ?? [] },
    (socket) => h2.emit("connection", socket),
    logger,
    options.counts,
  );
  // Paused: the gate reads a connection only once it may start its handshake.
  // Several handles, so that a busy thread still accepts a storm (./accept-sockets.ts).
  const accepting = await listenWithHandles(options.address, options.fd, "agents", gate.accept);
  if (accepting.fallbackReason) logger.info({ reason: accepting.fallbackReason }, "agent listener accepts through one handle");
  const { server } = accepting;
  // The kernel's own cap, in case the gate's bookkeeping is ever behind.
  for (const s of accepting.servers) s.maxConnections = limits.maxConnections + limits.maxHandshakes;

  return {
    server,
    counts: gate.counts,
    async close(graceMs: number) {
      clearInterval(sweep);
      const stopped = accepting.close();
      // GOAWAY to every session: no new calls, those in flight finish.
      for (const session of sessions.keys()) session.close();
      // Done once no call is left in flight (or the grace is over), not once
      // Node has wound every session down by itself after its GOAWAY: for
      // 10,000 connections that took ~2.6 s, all the while the port was closed
      // to their reconnects; destroying the sockets at once took ~0.8 s. A
      // moment more lets the last answers leave before the sockets go.
      const deadline = Date.now() + graceMs;
      const busy = () => [...sessions.values()].some((s) => s.streams > 0);
      while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (sessions.size > 0) await new Promise((r) => setTimeout(r, Math.min(100, Math.max(0, deadline - Date.now()))));
      for (const s of sessions.values()) s.connection.kill();
      gate.destroyAll();
      await stopped;
    },
  };
}
