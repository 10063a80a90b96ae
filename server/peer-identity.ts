import { X509Certificate } from "node:crypto";
import type { DetailedPeerCertificate, TLSSocket } from "node:tls";
import { rawEd25519PublicKey } from "../lib/certs.js";
import { keyFingerprint } from "../lib/fingerprint.js";
import { enrollmentClaim, type EnrollmentCa, type EnrollmentClaim } from "./enrollment-ca.js";

/** Who is at the other end of an agent connection, decided once per connection. */
export type PeerIdentity =
  | { kind: "agent"; publicKey: Uint8Array; keyFingerprint: string; enrollment?: EnrollmentClaim }
  | { kind: "refused"; reason: string; keyFingerprint?: string };

/**
 * The certificates Node links from the leaf through issuerCertificate, leaf
 * first: those the client sent that chain to the leaf, and possibly an issuer
 * from Node's own store after them (a self-signed certificate is its own
 * issuer, the same object, and ends the walk).
 */
function linkedChain(peer: DetailedPeerCertificate): DetailedPeerCertificate[] {
  const chain = [peer];
  let c = peer;
  while (c.issuerCertificate && c.issuerCertificate !== c && chain.length < 10) {
    c = c.issuerCertificate;
    chain.push(c);
  }
  return chain;
}

/** How many certificates Node shows of those the client sent: the leaf and those chaining to it. */
export function visibleCertificates(socket: TLSSocket): number {
  const peer = socket.getPeerCertificate(true);
  return peer?.raw ? linkedChain(peer).length : 0;
}

/**
 * The client's chain as it sent it, leaf first, when every one of the
 * `certificates` it sent chains to the leaf; undefined otherwise (an unrelated
 * certificate is invisible through Node's API but counted).
 */
function sentChain(socket: TLSSocket, certificates: number): X509Certificate[] | undefined {
  const peer = socket.getPeerCertificate(true);
  if (!peer?.raw) return undefined;
  const linked = linkedChain(peer);
  if (linked.length < certificates) return undefined;
  return linked.slice(0, certificates).map((c) => new X509Certificate(c.raw));
}

/**
 * The identity of a TLS peer on the agent listener: a client certificate
 * carrying an Ed25519 key. `certificates` is how many the client sent: those
 * Node shows, once the native guard (tls-certificate-guard.ts) has refused in
 * the handshake any that does not chain to the leaf; or, with the JavaScript
 * tap, counted from its TLS handshake (tls-client-flight.ts). Exactly one, not chain-verified: the TLS
 * handshake already proved possession of its key, and the key is the identity
 * (the machine database decides whether it belongs to a machine). The one
 * exception is a chain that verifies against an enrollment CA
 * (./enrollment-ca.ts): it may carry intermediates, and it adds an enrollment
 * claim. Sessions are never resumed on the agent listener, so every
 * connection's identity comes from a certificate it sent itself.
 */
export function identifyTlsPeer(socket: TLSSocket, certificates: number, enrollmentCas: readonly EnrollmentCa[] = []): PeerIdentity {
  if (certificates === 0) return { kind: "refused", reason: "no client certificate" };
  const chain = enrollmentCas.length > 0 ? sentChain(socket, certificates) : undefined;
  const claim = chain ? enrollmentClaim(chain, enrollmentCas) : undefined;
  if (certificates !== 1 && !claim) return { kind: "refused", reason: `${certificates} client certificates, not exactly one` };
  const x509 = socket.getPeerX509Certificate();
  const type = x509?.publicKey.asymmetricKeyType;
  if (!x509 || type !== "ed25519") return { kind: "refused", reason: `client certificate key is ${type ?? "unknown"}, not Ed25519` };
  const publicKey = rawEd25519PublicKey(x509.publicKey);
  return { kind: "agent", publicKey, keyFingerprint: keyFingerprint(publicKey), ...(claim && { enrollment: claim }) };
}
