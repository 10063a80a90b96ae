import { constants as cryptoConstants } from "node:crypto";
import type { Socket } from "node:net";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { decodeEd25519KeysLegacy, type Ed25519Decoder } from "./ed25519-key-decode.js";
import type { EnrollmentCa } from "./enrollment-ca.js";
import { peerHungUp } from "./peer-hung-up.js";
import { identifyTlsPeer, type PeerIdentity } from "./peer-identity.js";
import { certificateGuard, GUARD_MARKER } from "./tls-certificate-guard.js";
import { ClientFlight, countClientCertificates } from "./tls-client-flight.js";

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
  /**
   * Connections in their TLS handshake at once. More wait, unread, in arrival
   * order, until a handshake ends (at most `waitTimeoutMs` of waiting).
   *
   * Why 128 by default: the handshakes in progress share one thread, so with
   * 1,024 of them each took ~1,024 × 2.5 ms ≈ 2.5 s of wall time, finished
   * together, and ran into the agents' 5 s call deadlines; a 10,000-agent
   * reconnect storm took 54–55 s (PostgreSQL, 2-core machine) against
   * 36–37 s with 128, 41 s with 256 and 43 s with 64 (docs/benchmark-history.md).
   * A slot is also held for the network round trip of the handshake, so 128
   * slots cap a fleet 300 ms away at ~430 handshakes/s: raise it for such.
   */
  maxHandshakes: number;
  /** From the start of the handshake to its end, absolute. Unauthenticated connections never live longer. */
  handshakeTimeoutMs: number;
  /**
   * How long a connection may wait, unread, for a handshake slot. Longer than
   * the handshake: a waiting connection holds only its socket, and one closed
   * while waiting sends its agent into back-off (grpc-go gives up dialing
   * after 20 s by itself).
   */
  waitTimeoutMs: number;
  /**
   * How every certificate a client sends is counted, so that a leaf sent with
   * unrelated certificates is refused. "native": OpenSSL refuses, in the
   * handshake, a Certificate message with a certificate that does not chain
   * to the leaf (tls-certificate-guard.ts), and the count is read from the
   * socket (peer-identity.ts: its X509Certificate links every certificate
   * sent). "tap": a JavaScript stream between TCP and TLS keeps the
   * client's encrypted handshake and decrypts its Certificate message
   * (tls-client-flight.ts); exact too, but it costs ~2× the server CPU per
   * TLS message for the connection's whole life (a 37% lower heartbeat
   * ceiling). "native" falls back to "tap" when the addon is not built.
   */
  clientCertificateCheck: "native" | "tap";
  /**
   * How OpenSSL decodes the Ed25519 key of each client certificate
   * (./ed25519-key-decode.ts): "legacy" skips OpenSSL 3.0's decoder setup,
   * ~10% of the server's CPU while a fleet connects. Process-wide, once
   * installed; "legacy" falls back to "provider" when the addon is not built.
   */
  ed25519Decoder: Ed25519Decoder;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 60_000,
  maxConnectionsPerAddress: 4096,
  maxHandshakes: 128,
  handshakeTimeoutMs: 10_000,
  waitTimeoutMs: 20_000,
  clientCertificateCheck: "native",
  ed25519Decoder: "legacy",
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
const WAIT_TIMER = Symbol("bmaas.waitTimer");
type Tagged = Socket & { [CONNECTION]?: AgentConnection; [WAIT_TIMER]?: NodeJS.Timeout };

/**
 * The connection object a socket handed to HTTP/2 belongs to. Node's
 * Http2Session.socket is a proxy that forwards property reads to the socket,
 * so the tag is read from the very object accepted.
 */
export function connectionOf(socket: Socket): AgentConnection | undefined {
  return (socket as Tagged)[CONNECTION];
}

const TLS_HANDSHAKE_RECORD = 0x16;

/** A connection in its TLS handshake: what the handshake's end needs to find. */
interface Handshaking {
  flight: ClientFlight;
  handshakeOver: () => void;
  deadline: NodeJS.Timeout;
  kill: { current: () => void };
}

const CLIENT_HANDSHAKE_SECRET = "CLIENT_HANDSHAKE_TRAFFIC_SECRET ";

const fourTuple = (s: Socket) => `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;

export interface ConnectionCounts {
  open: number;
  /** Accepted, waiting for a handshake slot; not read from yet. */
  waiting: number;
  handshaking: number;
  authenticated: number;
  refusedAtAccept: number;
  handshakeFailures: number;
  /** Closed before their handshake: the agent had hung up already (./peer-hung-up.ts). */
  abandoned: number;
}

/**
 * Accepts raw sockets and hands each, once its identity is known, to
 * `ready` (which injects it into HTTP/2). Returns the accept function.
 */
export class ConnectionGate {
  readonly counts: ConnectionCounts;
  // Sockets waiting for a handshake slot, oldest first (a Set keeps insertion order).
  readonly #waiting = new Set<Socket>();
  readonly #perAddress = new Map<string, number>();
  readonly #sockets = new Set<Socket>();
  // Never listens: server-side TLS sockets take ALPN and session-ticket
  // settings from a tls.Server, so ours are made with this one.
  readonly #tlsServer: TlsServer;
  readonly #enrollmentCas: readonly EnrollmentCa[];
  // Tap: connections in their handshake by ClientHello random. The random is the
  // client's choice, so it only narrows the search: the handshake's records
  // must decrypt under that very TLS socket's keys to be its own.
  readonly #handshaking = new Map<string, Set<Handshaking>>();
  // The client handshake secret of each TLS socket, from OpenSSL's key log.
  readonly #secrets = new WeakMap<TLSSocket, { clientRandom: string; secret: string }>();
  // Certificates counted by the JavaScript tap rather than the native guard.
  readonly #tap: boolean;
  // Connections in their handshake when the native guard counts, by 4-tuple.
  readonly #plainTls = new Map<string, { handshakeOver: () => void; deadline: NodeJS.Timeout; kill: { current: () => void }; raw: Socket }>();

  constructor(
    private readonly limits: ConnectionLimits,
    tls: { cert: string; key: string; enrollmentCas?: readonly EnrollmentCa[] },
    private readonly ready: (socket: Socket, connection: AgentConnection) => void,
    private readonly logger: Logger,
    /** Where to count (another listener thread's are read by the main thread: ./agent-thread-protocol.ts). */
    counts?: ConnectionCounts,
  ) {
    this.counts = counts ?? { open: 0, waiting: 0, handshaking: 0, authenticated: 0, refusedAtAccept: 0, handshakeFailures: 0, abandoned: 0 };
    this.#enrollmentCas = tls.enrollmentCas ?? [];
    this.#tap = limits.clientCertificateCheck === "tap";
    if (!this.#tap) {
      const { error } = certificateGuard();
      if (error) {
        this.logger.warn({ reason: error }, "client certificates are counted by the JavaScript TLS tap (slower)");
        this.#tap = true;
      }
    }
    if (limits.ed25519Decoder === "legacy") {
      const { error } = decodeEd25519KeysLegacy();
      if (error) this.logger.warn({ reason: error }, "agent certificates' keys are decoded by OpenSSL's provider decoder (slower handshakes)");
    }
    // grpc-go refuses servers that do not negotiate h2 by ALPN.
    this.#tlsServer = createTlsServer({
      cert: tls.cert,
      key: tls.key,
      minVersion: "TLSv1.3",
      ALPNProtocols: ["h2"],
      requestCert: true,
      rejectUnauthorized: false,
      // No session resumption: every connection does a full handshake, so
      // every connection shows the certificate(s) it sends (tls-client-flight.ts)
      // and no ticket outlives a refused connection. Resumption would save ~20%
      // of the handshake CPU, but only for agents that resume, and across a
      // restart only with ticket keys on disk that could mint any identity
      // (docs/benchmark-history.md).
      secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
      // The native certificate guard acts on sessions with this context only.
      ...(!this.#tap && { sessionIdContext: GUARD_MARKER }),
    });
    this.#tlsServer.on("secureConnection", this.#onSecure);
    // Only the tap needs the key log (Node computes it for every handshake once listened to).
    if (this.#tap) this.#tlsServer.on("keylog", (line: Buffer, socket: TLSSocket) => {
      const text = line.toString("latin1");
      if (!text.startsWith(CLIENT_HANDSHAKE_SECRET)) return;
      const [clientRandom, secret] = text.slice(CLIENT_HANDSHAKE_SECRET.length).trim().split(" ");
      if (clientRandom && secret) this.#secrets.set(socket, { clientRandom, secret });
    });
    this.#tlsServer.on("tlsClientError", (err, socket) => {
      this.counts.handshakeFailures++;
      this.logger.debug({ err: err.message, peer: socket.remoteAddress }, "agent TLS handshake failed");
      socket.destroy();
    });
  }

  /** For net.Server's connection listener; the server must pause new connections (pauseOnConnect). */
  readonly accept = (socket: Socket): void => {
    const address = socket.remoteAddress ?? "unknown";
    const c = this.counts;
    const fromAddress = this.#perAddress.get(address) ?? 0;
    if (c.open >= this.limits.maxConnections || fromAddress >= this.limits.maxConnectionsPerAddress) {
      c.refusedAtAccept++;
      socket.destroy();
      return;
    }
    c.open++;
    this.#perAddress.set(address, fromAddress + 1);
    this.#sockets.add(socket);
    socket.once("close", () => {
      this.#sockets.delete(socket);
      c.open--;
      const n = (this.#perAddress.get(address) ?? 1) - 1;
      if (n <= 0) this.#perAddress.delete(address);
      else this.#perAddress.set(address, n);
    });
    socket.on("error", () => socket.destroy());
    socket.setNoDelay(true);
    if (c.handshaking < this.limits.maxHandshakes) {
      this.#handshake(socket);
      return;
    }
    // A reconnecting fleet arrives all at once. Refusing what exceeds the
    // handshake cap sends those agents into back-off, and the storm then ends
    // with an idle server waiting for their retries; so they wait here
    // instead, unread (a waiting socket costs no TLS state), and take the
    // next free slot in arrival order. Waiting is bounded too.
    c.waiting++;
    this.#waiting.add(socket);
    const gaveUp = setTimeout(() => socket.destroy(), this.limits.waitTimeoutMs);
    socket.once("close", () => {
      clearTimeout(gaveUp);
      if (this.#waiting.delete(socket)) c.waiting--;
    });
    (socket as Tagged)[WAIT_TIMER] = gaveUp;
  };

  /** Starts the next waiting connections while handshake slots are free. */
  #admitWaiting(): void {
    for (const socket of this.#waiting) {
      if (this.counts.handshaking >= this.limits.maxHandshakes) return;
      this.#waiting.delete(socket);
      this.counts.waiting--;
      clearTimeout((socket as Tagged)[WAIT_TIMER]);
      this.#handshake(socket);
    }
  }

  #handshake(socket: Socket): void {
    const c = this.counts;
    c.handshaking++;
    let handshaking = true;
    const doneHandshaking = () => {
      if (handshaking) {
        c.handshaking--;
        handshaking = false;
        this.#admitWaiting();
      }
    };
    // Absolute, unlike Node's handshakeTimeout (an idle timer that every
    // trickled byte resets). Cleared only for authenticated connections.
    const kill = { current: () => socket.destroy() };
    const deadline = setTimeout(() => kill.current(), this.limits.handshakeTimeoutMs);
    socket.once("close", () => {
      clearTimeout(deadline);
      doneHandshaking();
    });

    // Peek at the first byte to tell TLS from plaintext, then hand the socket
    // on with that byte put back.
    socket.once("data", (chunk: Buffer) => {
      socket.pause();
      socket.unshift(chunk);
      if (chunk[0] !== TLS_HANDSHAKE_RECORD) {
        // Served, so that it hears UNAUTHENTICATED as the contract says, but
        // it keeps the handshake deadline as its whole lifetime.
        doneHandshaking();
        this.#hand(socket, { kind: "refused", reason: "not TLS" }, socket.remoteAddress ?? "unknown", kill);
        return;
      }
      if (peerHungUp(socket)) {
        // Its agent gave up dialing (late in a storm: ./peer-hung-up.ts) and
        // can never finish a handshake: skip the half of one the server
        // would do before the reset told it so.
        c.abandoned++;
        socket.destroy();
        return;
      }
      this.#startTls(socket, doneHandshaking, deadline, kill);
    });
    socket.resume();
  }

  /** Drops every connection at once (after a graceful shutdown's grace). */
  destroyAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  // Server-side TLS sockets are made by the tls.Server (a hand-made one
  // starts reading before HTTP/2 takes over and strands the client's preface),
  // over a ClientFlight that keeps the client's encrypted handshake records.
  #startTls(socket: Socket, handshakeOver: () => void, deadline: NodeJS.Timeout, kill: { current: () => void }): void {
    if (!this.#tap) {
      // TLS reads the TCP socket directly. The handshake's end is linked back
      // to its TCP connection by the 4-tuple, which the kernel keeps unique
      // among open connections; only this bookkeeping uses it, the identity is
      // attached to the TLS socket itself.
      const key = fourTuple(socket);
      this.#plainTls.set(key, { handshakeOver, deadline, kill, raw: socket });
      socket.once("close", () => this.#plainTls.delete(key));
      this.#tlsServer.emit("connection", socket);
      return;
    }
    let entry: Handshaking | undefined;
    const flight = new ClientFlight(socket, (f) => {
      entry = { flight: f, handshakeOver, deadline, kill };
      const random = f.clientRandom!;
      const set = this.#handshaking.get(random) ?? new Set<Handshaking>();
      set.add(entry);
      this.#handshaking.set(random, set);
    });
    socket.once("close", () => {
      if (entry) this.#forget(entry);
    });
    this.#tlsServer.emit("connection", flight);
  }

  #forget(entry: Handshaking): void {
    const random = entry.flight.clientRandom!;
    const set = this.#handshaking.get(random);
    set?.delete(entry);
    if (set?.size === 0) this.#handshaking.delete(random);
  }

  #onSecure = (tls: TLSSocket): void => {
    if (!this.#tap) return this.#onPlainSecure(tls);
    const keys = this.#secrets.get(tls);
    this.#secrets.delete(tls);
    const suite = tls.getCipher()?.standardName ?? "";
    let found: { entry: Handshaking; certificates: number } | undefined;
    for (const entry of keys ? (this.#handshaking.get(keys.clientRandom) ?? []) : []) {
      const certificates = countClientCertificates(entry.flight.records, suite, keys!.secret);
      if (certificates !== undefined) {
        found = { entry, certificates };
        break;
      }
    }
    if (!found) {
      // Not one of ours (or records that do not decrypt): no identity to give.
      this.counts.handshakeFailures++;
      tls.destroy();
      return;
    }
    const { entry, certificates } = found;
    this.#forget(entry);
    entry.flight.release();
    entry.handshakeOver();
    const raw = entry.flight.raw;
    const identity = identifyTlsPeer(tls, certificates, this.#enrollmentCas);
    if (identity.kind === "agent") {
      clearTimeout(entry.deadline);
      this.counts.authenticated++;
      tls.once("close", () => this.counts.authenticated--);
    }
    this.#hand(tls, identity, raw.remoteAddress ?? "unknown", entry.kill, raw);
  };

  #onPlainSecure(tls: TLSSocket): void {
    const key = fourTuple(tls);
    const pending = this.#plainTls.get(key);
    this.#plainTls.delete(key);
    if (!pending) {
      tls.destroy();
      return;
    }
    pending.handshakeOver();
    const identity = identifyTlsPeer(tls, undefined, this.#enrollmentCas);
    if (identity.kind === "agent") {
      clearTimeout(pending.deadline);
      this.counts.authenticated++;
      tls.once("close", () => this.counts.authenticated--);
    }
    this.#hand(tls, identity, tls.remoteAddress ?? "unknown", pending.kill, pending.raw);
  }

  #hand(socket: Socket, identity: PeerIdentity, remoteAddress: string, kill: { current: () => void }, raw: Socket = socket): void {
    // HTTP/2 will own the socket; destroying it (and the TCP socket under a
    // TLS one) is what ends the connection (a closed HTTP/2 session only
    // half-closes a socket its peer still writes to).
    kill.current = () => {
      socket.destroy();
      raw.destroy();
    };
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
