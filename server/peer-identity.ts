import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { keyFingerprint } from "../bmdb/index.js";
import { rawEd25519PublicKey } from "../lib/certs.js";

/** Who is at the other end of an agent connection, decided once per connection. */
export type PeerIdentity =
  | { kind: "agent"; publicKey: Uint8Array; keyFingerprint: string }
  | { kind: "refused"; reason: string; keyFingerprint?: string };

/**
 * The identity of a TLS peer on the agent listener: exactly one client
 * certificate carrying an Ed25519 key. The certificate is not chain-verified;
 * the TLS handshake already proved possession of its key, and the key is the
 * identity (the machine database decides whether it belongs to a machine).
 */
export function identifyTlsPeer(socket: TLSSocket): PeerIdentity {
  const peer = socket.getPeerCertificate(true);
  if (!peer || !peer.raw) return { kind: "refused", reason: "no client certificate" };
  // Node links the certificates the client sent through issuerCertificate; a
  // self-signed certificate is its own issuer.
  const issuer = peer.issuerCertificate;
  if (issuer && issuer.fingerprint256 !== peer.fingerprint256) {
    return { kind: "refused", reason: "more than one client certificate" };
  }
  const x509 = socket.getPeerX509Certificate();
  const type = x509?.publicKey.asymmetricKeyType;
  if (!x509 || type !== "ed25519") return { kind: "refused", reason: `client certificate key is ${type ?? "unknown"}, not Ed25519` };
  const publicKey = rawEd25519PublicKey(x509.publicKey);
  return { kind: "agent", publicKey, keyFingerprint: keyFingerprint(publicKey) };
}

/**
 * Connection identities by the peer address grpc-js reports for a call
 * (call.getPeer()): the only link from a call back to its connection, since
 * grpc-js shows handlers the certificate only of chain-verified peers.
 */
export class PeerRegistry {
  readonly #peers = new Map<string, PeerIdentity>();

  static keyOf(socket: Socket): string {
    return socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : `${socket.remoteAddress}`;
  }

  /** Remembers socket's identity until it closes. */
  add(socket: Socket, identity: PeerIdentity): void {
    const key = PeerRegistry.keyOf(socket);
    this.#peers.set(key, identity);
    socket.once("close", () => {
      if (this.#peers.get(key) === identity) this.#peers.delete(key);
    });
  }

  /** The identity of the connection a call arrived on. */
  lookup(peer: string): PeerIdentity {
    return this.#peers.get(peer) ?? { kind: "refused", reason: "unknown connection" };
  }

  get size(): number {
    return this.#peers.size;
  }
}
