import { X509Certificate } from "node:crypto";

// Automatic admission by CA (--enrollment-ca): an agent whose client
// certificate chains to an enrollment CA and names its machine is accepted on
// its first heartbeat (bmdb/admission.ts admitByEnrollment).
//
// How a certificate names the machine: a URI subject alternative name
// `urn:bmaas:machine:<machine-id>` — exactly one, and the heartbeat's
// machine_id must be that ID. A URI SAN cannot be confused with a host name
// (DNS SANs) or with whatever a CA puts into the subject.
//
// What is checked: the leaf carries the agent's Ed25519 key (checked by
// peer-identity.ts) and is not a CA; each certificate the client sent is
// issued and signed by the next, which is a CA; the last is an enrollment CA
// or is issued and signed by one; every certificate, the enrollment CA
// included, is within its validity now. Not checked: revocation (CRL/OCSP),
// name and path-length constraints, key usages — an enrollment CA is a CA the
// operator runs for this purpose only. Once a key is admitted it is the
// machine's key like any other: the certificate's expiry later does not
// revoke it (bmctl agent revoke does).

/** The scheme of the URI SAN that names the machine. */
export const MACHINE_URI_PREFIX = "urn:bmaas:machine:";

export interface EnrollmentCa {
  cert: X509Certificate;
  /** How history and logs name it: subject and SHA-256 fingerprint. */
  name: string;
}

/** What a chained certificate claims. */
export interface EnrollmentClaim {
  machineId: string;
  /** The admitting CA's name. */
  ca: string;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Parses the CA certificates of one --enrollment-ca file (one or more PEM blocks); throws a one-line reason. */
export function parseEnrollmentCas(file: string, pem: string): EnrollmentCa[] {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new Error(`--enrollment-ca ${file}: no PEM certificate in it`);
  return blocks.map((block) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (e) {
      throw new Error(`--enrollment-ca ${file}: not a certificate (${(e as Error).message})`);
    }
    if (!cert.ca) throw new Error(`--enrollment-ca ${file}: ${cert.subject.replace(/\n/g, ", ")} is not a CA certificate`);
    return { cert, name: `${cert.subject.replace(/\n/g, ", ")} (sha256:${cert.fingerprint256.replace(/:/g, "").toLowerCase().slice(0, 16)})` };
  });
}

function valid(c: X509Certificate, now: Date): boolean {
  return new Date(c.validFrom).getTime() <= now.getTime() && now.getTime() <= new Date(c.validTo).getTime();
}

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** The machine IDs the leaf names in urn:bmaas:machine: URI SANs. */
export function namedMachines(leaf: X509Certificate): string[] {
  const sans = leaf.subjectAltName ?? "";
  const re = /(?:^|, )URI:urn:bmaas:machine:([0-9a-fA-F-]{36})(?=,|$)/g;
  return [...sans.matchAll(re)].map((m) => m[1]!.toLowerCase());
}

/**
 * The enrollment claim of a client certificate chain (leaf first, as the
 * client sent it), or undefined when it does not chain to an enrollment CA,
 * is not valid now, or does not name exactly one machine.
 */
export function enrollmentClaim(chain: readonly X509Certificate[], cas: readonly EnrollmentCa[], now = new Date()): EnrollmentClaim | undefined {
  const leaf = chain[0];
  if (!leaf || cas.length === 0 || leaf.ca) return undefined;
  if (!chain.every((c) => valid(c, now))) return undefined;
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i + 1]!.ca || !signedBy(chain[i]!, chain[i + 1]!)) return undefined;
  }
  const last = chain[chain.length - 1]!;
  const ca = cas.find((a) => valid(a.cert, now) && (last.fingerprint256 === a.cert.fingerprint256 ? chain.length > 1 : signedBy(last, a.cert)));
  if (!ca) return undefined;
  const machines = namedMachines(leaf);
  if (machines.length !== 1) return undefined;
  return { machineId: machines[0]!, ca: ca.name };
}
