import "reflect-metadata";
import { createPublicKey, webcrypto, type KeyObject } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { generateAgentKey } from "../../lib/certs.js";
import { MACHINE_URI_PREFIX } from "../../server/enrollment-ca.js";

// Enrollment CAs and agent certificates they sign, for tests: real X.509,
// real signatures (ECDSA P-256 CAs, Ed25519 agent leaves).

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 24 * 3600_000;

export interface TestCa {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
  pem: string;
}

async function newCa(name: string, issuer?: TestCa): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(P256, true, ["sign", "verify"])) as unknown as CryptoKeyPair;
  const extensions = [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)];
  const validity = { notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 365 * DAY) };
  const cert = issuer
    ? await x509.X509CertificateGenerator.create({
        serialNumber: "0a",
        subject: `CN=${name}`,
        issuer: issuer.cert.subject,
        ...validity,
        publicKey: keys.publicKey,
        signingKey: issuer.keys.privateKey,
        signingAlgorithm: P256,
        extensions,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: "01", name: `CN=${name}`, ...validity, keys, signingAlgorithm: P256, extensions });
  return { cert, keys, pem: cert.toString("pem") + "\n" };
}

export const createTestCa = (name: string) => newCa(name);
export const createIntermediate = (name: string, root: TestCa) => newCa(name, root);

export interface AgentCert {
  key: KeyObject;
  /** PEM chain, leaf first. */
  chain: string;
}

/** An Ed25519 agent key and a leaf for it signed by ca, naming machineId in a URI SAN. */
export async function issueAgentCert(
  ca: TestCa,
  machineId: string,
  options: { notAfter?: Date; notBefore?: Date; intermediates?: TestCa[]; uri?: string; key?: KeyObject } = {},
): Promise<AgentCert> {
  const key = options.key ?? generateAgentKey();
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  const publicKey = (await webcrypto.subtle.importKey("spki", spki, { name: "Ed25519" }, true, ["verify"])) as unknown as CryptoKey;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=agent",
    issuer: ca.cert.subject,
    notBefore: options.notBefore ?? new Date(Date.now() - DAY),
    notAfter: options.notAfter ?? new Date(Date.now() + 30 * DAY),
    publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: P256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: options.uri ?? `${MACHINE_URI_PREFIX}${machineId}` }]),
    ],
  });
  const chain = [leaf.toString("pem"), ...(options.intermediates ?? []).map((c) => c.cert.toString("pem"))].join("\n") + "\n";
  return { key, chain };
}
