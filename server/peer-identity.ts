import type { TLSSocket } from "node:tls";
import { rawEd25519PublicKey } from "../lib/certs.js";
import { keyFingerprint } from "../lib/fingerprint.js";

/** Who is at the other end of an agent connection, decided once per connection. */
export type PeerIdentity =
  | { kind: "agent"; publicKey: Uint8Array; keyFingerprint: string }
  | { kind: "refused"; reason: string; keyFingerprint?: string };

/**
 * The identity of a TLS peer on the agent listener: exactly one client
 * certificate carrying an Ed25519 key. `certificates` is how many the client
 * sent, counted from its TLS handshake (tls-client-flight.ts): Node shows
 * only those that chain to the leaf. The certificate is not chain-verified;
 * the TLS handshake already proved possession of its key, and the key is the
 * identity (the machine database decides whether it belongs to a machine).
 * Sessions are never resumed on the agent listener, so every connection's
 * identity comes from a certificate it sent itself.
 */
export function identifyTlsPeer(socket: TLSSocket, certificates: number): PeerIdentity {
  if (certificates === 0) return { kind: "refused", reason: "no client certificate" };
  if (certificates !== 1) return { kind: "refused", reason: `${certificates} client certificates, not exactly one` };
  const x509 = socket.getPeerX509Certificate();
  const type = x509?.publicKey.asymmetricKeyType;
  if (!x509 || type !== "ed25519") return { kind: "refused", reason: `client certificate key is ${type ?? "unknown"}, not Ed25519` };
  const publicKey = rawEd25519PublicKey(x509.publicKey);
  return { kind: "agent", publicKey, keyFingerprint: keyFingerprint(publicKey) };
}
