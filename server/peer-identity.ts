import { X509Certificate } from "node:crypto";
import type { DetailedPeerCertificate, TLSSocket } from "node:tls";
import { keyFingerprint } from "../bmdb/index.js";
import { rawEd25519PublicKey } from "../lib/certs.js";
import { enrollmentClaim, type EnrollmentCa, type EnrollmentClaim } from "./enrollment-ca.js";

/** Who is at the other end of an agent connection, decided once per connection. */
export type PeerIdentity =
  | { kind: "agent"; publicKey: Uint8Array; keyFingerprint: string; enrollment?: EnrollmentClaim }
  | { kind: "refused"; reason: string; keyFingerprint?: string };

/**
 * The certificates the client sent, leaf first, as Node links them through
 * issuerCertificate (a self-signed certificate is its own issuer, the same
 * object). Certificates that do not chain to the leaf are not visible here.
 */
function presentedChain(peer: DetailedPeerCertificate): DetailedPeerCertificate[] {
  const chain = [peer];
  let c = peer;
  while (c.issuerCertificate && c.issuerCertificate !== c && chain.length < 10) {
    c = c.issuerCertificate;
    chain.push(c);
  }
  return chain;
}

/**
 * The identity of a TLS peer on the agent listener: a client certificate
 * carrying an Ed25519 key. The key is the identity (the machine database
 * decides whether it belongs to a machine); the TLS handshake already proved
 * possession of it. Exactly one certificate, not chain-verified — except a
 * chain that verifies against an enrollment CA (./enrollment-ca.ts), which may
 * carry intermediates and adds an enrollment claim.
 * On a resumed TLS session OpenSSL restores the peer certificate of the full
 * handshake that created the session, so the identity is that key again.
 */
export function identifyTlsPeer(socket: TLSSocket, enrollmentCas: readonly EnrollmentCa[] = []): PeerIdentity {
  const peer = socket.getPeerCertificate(true);
  if (!peer || !peer.raw) return { kind: "refused", reason: "no client certificate" };
  const chain = presentedChain(peer);
  // More than one certificate (sent, or an issuer Node found in its own
  // store) is refused, unless the chain verifies against an enrollment CA.
  const claim = enrollmentCas.length > 0 ? enrollmentClaim(chain.map((c) => new X509Certificate(c.raw)), enrollmentCas) : undefined;
  if (chain.length > 1 && !claim) return { kind: "refused", reason: "more than one client certificate" };
  const x509 = socket.getPeerX509Certificate();
  const type = x509?.publicKey.asymmetricKeyType;
  if (!x509 || type !== "ed25519") return { kind: "refused", reason: `client certificate key is ${type ?? "unknown"}, not Ed25519` };
  const publicKey = rawEd25519PublicKey(x509.publicKey);
  return { kind: "agent", publicKey, keyFingerprint: keyFingerprint(publicKey), ...(claim && { enrollment: claim }) };
}
