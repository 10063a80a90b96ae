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
 * On a resumed TLS session OpenSSL restores the peer certificate of the full
 * handshake that created the session, so the identity is that key again.
 */
export function identifyTlsPeer(socket: TLSSocket): PeerIdentity {
  const peer = socket.getPeerCertificate(true);
  if (!peer || !peer.raw) return { kind: "refused", reason: "no client certificate" };
  // Node links the certificates the client sent through issuerCertificate; a
  // self-signed certificate is its own issuer (the same object). Another
  // object — even a second copy of the leaf — means more than one was sent.
  const issuer = peer.issuerCertificate;
  if (issuer && issuer !== peer) return { kind: "refused", reason: "more than one client certificate" };
  const x509 = socket.getPeerX509Certificate();
  const type = x509?.publicKey.asymmetricKeyType;
  if (!x509 || type !== "ed25519") return { kind: "refused", reason: `client certificate key is ${type ?? "unknown"}, not Ed25519` };
  const publicKey = rawEd25519PublicKey(x509.publicKey);
  return { kind: "agent", publicKey, keyFingerprint: keyFingerprint(publicKey) };
}
