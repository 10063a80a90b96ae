import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { rawEd25519PublicKey } from "../lib/certs.js";
import { keyFingerprint } from "../lib/fingerprint.js";
import { enrollmentClaim, type EnrollmentCa, type EnrollmentClaim } from "./enrollment-ca.js";

/** Who is at the other end of an agent connection, decided once per connection. */
export type PeerIdentity =
  | { kind: "agent"; publicKey: Uint8Array; keyFingerprint: string; enrollment?: EnrollmentClaim }
  | { kind: "refused"; reason: string; keyFingerprint?: string };

/** More than the native guard lets through (native/tls-certificate-guard.c). */
const MAX_CERTIFICATES = 16;

/**
 * Every certificate the client sent, leaf first, in the order it sent them,
 * at most MAX_CERTIFICATES + 1. On a server, the peer's X509Certificate links
 * each certificate to the next one the client sent through
 * issuerCertificate, whether it issued it or not (getPeerCertificate(true),
 * by contrast, shows only those that chain to the leaf, and costs ~10× as
 * much: it builds every field of every certificate). Read it once per
 * connection: Node (20) takes the certificates after the leaf out of the
 * connection's chain as it reads them, so a second read finds the leaf alone.
 */
function sentCertificates(socket: TLSSocket): X509Certificate[] {
  const sent: X509Certificate[] = [];
  for (let c = socket.getPeerX509Certificate(); c && sent.length <= MAX_CERTIFICATES; c = c.issuerCertificate) sent.push(c);
  return sent;
}

/**
 * The sent chain, leaf first, each certificate followed by its issuer, when
 * every certificate sent chains to the leaf (in whatever order they came);
 * undefined otherwise.
 */
function linkedFromLeaf(sent: readonly X509Certificate[]): X509Certificate[] | undefined {
  if (sent.length === 0 || sent.length > MAX_CERTIFICATES) return undefined;
  const rest = sent.slice(1);
  const chain = [sent[0]!];
  while (rest.length > 0) {
    const i = rest.findIndex((c) => chain.at(-1)!.checkIssued(c));
    if (i < 0) return undefined;
    chain.push(...rest.splice(i, 1));
  }
  return chain;
}

/**
 * The identity of a TLS peer on the agent listener: a client certificate
 * carrying an Ed25519 key. Exactly one certificate sent (counted from the
 * socket with the native guard, tls-certificate-guard.ts, which has also
 * refused in the handshake any that does not chain to the leaf; `tapped`
 * when the JavaScript tap counted them in the handshake, tls-client-flight.ts),
 * not chain-verified: the TLS handshake already proved possession of its key,
 * and the key is the identity (the machine database decides whether it
 * belongs to a machine). The one exception is a chain that verifies against
 * an enrollment CA (./enrollment-ca.ts): it may carry intermediates, and it
 * adds an enrollment claim. Sessions are never resumed on the agent listener,
 * so every connection's identity comes from a certificate it sent itself.
 */
export function identifyTlsPeer(socket: TLSSocket, tapped: number | undefined, enrollmentCas: readonly EnrollmentCa[] = []): PeerIdentity {
  const sent = sentCertificates(socket);
  const certificates = tapped ?? sent.length;
  if (certificates === 0) return { kind: "refused", reason: "no client certificate" };
  const chain = enrollmentCas.length > 0 && sent.length === certificates ? linkedFromLeaf(sent) : undefined;
  const claim = chain ? enrollmentClaim(chain, enrollmentCas) : undefined;
  if (certificates !== 1 && !claim) return { kind: "refused", reason: `${certificates} client certificates, not exactly one` };
  const x509 = sent[0];
  const type = x509?.publicKey.asymmetricKeyType;
  if (!x509 || type !== "ed25519") return { kind: "refused", reason: `client certificate key is ${type ?? "unknown"}, not Ed25519` };
  const publicKey = rawEd25519PublicKey(x509.publicKey);
  return { kind: "agent", publicKey, keyFingerprint: keyFingerprint(publicKey), ...(claim && { enrollment: claim }) };
}
