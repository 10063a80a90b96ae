import { hkdfSync } from "node:crypto";
import type { Socket } from "node:net";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { EnrollmentCa } from "./enrollment-ca.js";
import { identifyTlsPeer, type PeerIdentity } from "./peer-identity.js";

// Admission of raw connections to the agent listener, before HTTP/2: caps on
// connections (in total, per source address, and still handshaking), an
// absolute deadline for the TLS handshake (a trickling peer cannot stretch it),
// the peek that tells TLS from plaintext, and the identity decided once per
// connection and attached to that connection object — nothing another
// connection can share or overwrite.

export interface ConnectionLimits {
  /** Open agent connections at most; further ones are closed at accept. */
  maxConnections: number;
  /** Open connections from one source address at most. */
  maxConnectionsPerAddress: number;
  /** Connections still in their TLS handshake at once; more are closed at accept. */
  maxHandshakes: number;
  /** From accept to a finished handshake, absolute. Unauthenticated connections never live longer. */
  handshakeTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 60_000,
  maxConnectionsPerAddress: 4096,
  maxHandshakes: 1024,
  handshakeTimeoutMs: 10_000,
};

/** One accepted agent connection: its identity and bookkeeping. */
export interface AgentConnection {
  readonly identity: PeerIdentity;
  readonly remoteAddress: string;
  readonly openedAt: number;
  /**
   * Set once a heartbeat with the identity's enrollment claim was answered
   * OK: the key is admitted, later heartbeats take the batch path.
   */
  enrolled: boolean;
  /**
   * Ends the connection now. Once HTTP/2 owns the socket, destroying the
   * socket no longer closes it: the listener points this at the session.
   */
  kill: () => void;
}

const CONNECTION = Symbol("bmaas.agentConnection");
type Tagged = Socket & { [CONNECTION]?: AgentConnection };

/**
 * The connection object a socket handed to HTTP/2 belongs to. Node's
 * Http2Session.socket is a proxy that forwards property reads to the socket,
 * so the tag is read from the very object accepted.
 */
export function connectionOf(socket: Socket): AgentConnection | undefined {
  return (socket as Tagged)[CONNECTION];
}

const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * TLS session-ticket keys derived from the server's private key, so that every
 * replica and every restart of a server with that key can resume the sessions
 * of the others: after a restart a reconnecting fleet resumes instead of doing
 * full handshakes. A resumed session carries the client certificate of the
 * handshake that made it (OpenSSL keeps it in the session), so the identity is
 * the same key as before, never weaker. The keys do not rotate; whoever holds
 * the server key could read tickets, but could impersonate the server anyway.
 */
function sessionTicketKeys(serverKeyPem: string): Buffer {
  return Buffer.from(hkdfSync("sha256", serverKeyPem, "bmaas agent listener", "tls session ticket keys v1", 48));
}

const fourTuple = (s: Socket) => `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;

export interface ConnectionCounts {
  open: number;
  handshaking: number;
  authenticated: number;
  refusedAtAccept: number;
  handshakeFailures: number;
}

/**
 * Accepts raw sockets and hands each, once its identity is known, to
 * `ready` (which injects it into HTTP/2). Returns the accept function.
 */
export class ConnectionGate {
  readonly counts: ConnectionCounts = { open: 0, handshaking: 0, authenticated: 0, refusedAtAccept: 0, handshakeFailures: 0 };
  readonly #perAddress = new Map<string, number>();
  readonly #sockets = new Set<Socket>();
  // Never listens: server-side TLS sockets take ALPN and session-ticket
  // settings from a tls.Server, so ours are made with this one.
  readonly #tlsServer: TlsServer;
  readonly #enrollmentCas: readonly EnrollmentCa[];
  readonly #pendingTls = new Map<string, { handshakeOver: () => void; deadline: NodeJS.Timeout; kill: { current: () => void } }>();

  constructor(
    private readonly limits: ConnectionLimits,
    tls: { cert: string; key: string; enrollmentCas?: readonly EnrollmentCa[] },
    private readonly ready: (socket: Socket, connection: AgentConnection) => void,
    private readonly logger: Logger,
  ) {
    this.#enrollmentCas = tls.enrollmentCas ?? [];
    // grpc-go refuses servers that do not negotiate h2 by ALPN.
    this.#tlsServer = createTlsServer({
      cert: tls.cert,
      key: tls.key,
      minVersion: "TLSv1.3",
      ALPNProtocols: ["h2"],
      requestCert: true,
      rejectUnauthorized: false,
      ticketKeys: sessionTicketKeys(tls.key),
    });
    this.#tlsServer.on("secureConnection", this.#onSecure);
    this.#tlsServer.on("tlsClientError", (err, socket) => {
      this.counts.handshakeFailures++;
      this.logger.debug({ err: err.message, peer: socket.remoteAddress }, "agent TLS handshake failed");
      socket.destroy();
    });
  }

  /** For net.Server's connection listener. */
  readonly accept = (socket: Socket): void => {
    const address = socket.remoteAddress ?? "unknown";
    const c = this.counts;
    const fromAddress = this.#perAddress.get(address) ?? 0;
    if (c.open >= this.limits.maxConnections || fromAddress >= this.limits.maxConnectionsPerAddress || c.handshaking >= this.limits.maxHandshakes) {
      c.refusedAtAccept++;
      socket.destroy();
      return;
    }
    c.open++;
    c.handshaking++;
    this.#perAddress.set(address, fromAddress + 1);
    this.#sockets.add(socket);
    let handshaking = true;
    const doneHandshaking = () => {
      if (handshaking) c.handshaking--;
      handshaking = false;
    };
    // Absolute, unlike Node's handshakeTimeout (an idle timer that every
    // trickled byte resets). Cleared only for authenticated connections.
    const kill = { current: () => socket.destroy() };
    const deadline = setTimeout(() => kill.current(), this.limits.handshakeTimeoutMs);
    socket.once("close", () => {
      this.#sockets.delete(socket);
      clearTimeout(deadline);
      doneHandshaking();
      c.open--;
      const n = (this.#perAddress.get(address) ?? 1) - 1;
      if (n <= 0) this.#perAddress.delete(address);
      else this.#perAddress.set(address, n);
    });
    socket.on("error", () => socket.destroy());
    socket.setNoDelay(true);

    // Peek at the first byte to tell TLS from plaintext, then hand the socket
    // on with that byte put back.
    socket.once("data", (chunk: Buffer) => {
      socket.pause();
      socket.unshift(chunk);
      if (chunk[0] !== TLS_HANDSHAKE_RECORD) {
        // Served, so that it hears UNAUTHENTICATED as the contract says, but
        // it keeps the handshake deadline as its whole lifetime.
        doneHandshaking();
        this.#hand(socket, { kind: "refused", reason: "not TLS" }, address, kill);
        return;
      }
      this.#startTls(socket, doneHandshaking, deadline, kill);
    });
  };

  /** Drops every connection at once (after a graceful shutdown's grace). */
  destroyAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  // Server-side TLS sockets are made by the tls.Server (a hand-made one
  // starts reading before HTTP/2 takes over and strands the client's preface),
  // so the handshake is linked back to its TCP connection by the 4-tuple,
  // which the kernel keeps unique among open connections. Only the handshake
  // bookkeeping uses it; the identity is attached to the TLS socket itself.
  #startTls(socket: Socket, handshakeOver: () => void, deadline: NodeJS.Timeout, kill: { current: () => void }): void {
    const key = fourTuple(socket);
    this.#pendingTls.set(key, { handshakeOver, deadline, kill });
    socket.once("close", () => this.#pendingTls.delete(key));
    this.#tlsServer.emit("connection", socket);
  }

  #onSecure = (tls: TLSSocket): void => {
    const key = fourTuple(tls);
    const pending = this.#pendingTls.get(key);
    this.#pendingTls.delete(key);
    if (!pending) {
      tls.destroy();
      return;
    }
    pending.handshakeOver();
    const identity = identifyTlsPeer(tls, this.#enrollmentCas);
    if (identity.kind === "agent") {
      clearTimeout(pending.deadline);
      this.counts.authenticated++;
      tls.once("close", () => this.counts.authenticated--);
    }
    this.#hand(tls, identity, tls.remoteAddress ?? "unknown", pending.kill);
  };

  #hand(socket: Socket, identity: PeerIdentity, remoteAddress: string, kill: { current: () => void }): void {
    // HTTP/2 will own the socket; destroying it is what ends the connection
    // (a closed HTTP/2 session only half-closes a socket its peer still writes to).
    kill.current = () => socket.destroy();
    const connection: AgentConnection = {
      identity,
      remoteAddress,
      openedAt: Date.now(),
      enrolled: false,
      get kill() {
        return kill.current;
      },
      set kill(f: () => void) {
        kill.current = f;
      },
    };
    (socket as Tagged)[CONNECTION] = connection;
    this.ready(socket, connection);
  }
}
