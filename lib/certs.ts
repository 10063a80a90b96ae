// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs this polyfill loaded first.
import "reflect-metadata";
import { createPublicKey, generateKeyPairSync, webcrypto, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { DEV_CERT_FILES } from "./dev-cert-files.js";

// Certificates: the development PKI that `--dev-certs` creates (an ECDSA P-256
// CA, the server's certificate, one operator client certificate) and the
// ephemeral self-signed Ed25519 agent certificate of the wire contract.
//
// Why P-256 for the PKI: gRPC's C-core stacks (Python grpcio, C++, Ruby, PHP)
// cannot verify an Ed25519 server certificate, while every TLS stack verifies
// P-256. Agents keep Ed25519: their key is their identity (the contract).

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ED25519 = { name: "Ed25519" } as const;
const P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const ECDSA_SHA256 = { name: "ECDSA", hash: "SHA-256" } as const;

/** A PEM certificate with its PEM private key. */
export interface PemPair {
  cert: string;
  key: string;
}

/** The files of a development PKI, by role. */
export interface DevCerts {
  dir: string;
  ca: PemPair;
  server: PemPair;
  operator: PemPair;
}

async function toCryptoKeys(privateKey: KeyObject, algorithm: typeof ED25519 | typeof P256 = ED25519): Promise<CryptoKeyPair> {
  const subtle = webcrypto.subtle;
  const priv = privateKey.export({ format: "der", type: "pkcs8" });
  const pub = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return {
    privateKey: (await subtle.importKey("pkcs8", priv, algorithm, true, ["sign"])) as unknown as CryptoKey,
    publicKey: (await subtle.importKey("spki", pub, algorithm, true, ["verify"])) as unknown as CryptoKey,
  };
}

function newP256(): KeyObject {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
}

function newEd25519(): KeyObject {
  return generateKeyPairSync("ed25519").privateKey;
}

/** PEM with a final newline, so that certificates concatenate into a chain. */
function pemCert(cert: x509.X509Certificate): string {
  return cert.toString("pem").trimEnd() + "\n";
}

function pemKey(key: KeyObject): string {
  return key.export({ format: "pem", type: "pkcs8" }).toString();
}

/** The raw 32-byte public key of an Ed25519 private or public key. */
export function rawEd25519PublicKey(key: KeyObject): Uint8Array {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  const jwk = pub.export({ format: "jwk" });
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || !jwk.x) throw new Error("not an Ed25519 key");
  return Buffer.from(jwk.x, "base64url");
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString("hex").replace(/^[89a-f]/, "1");
}

const FAR_FUTURE = new Date("9999-12-31T23:59:59Z");

/**
 * Creates a development PKI: an ECDSA P-256 CA, a server certificate for the
 * local host names, and an operator client certificate, all signed by the CA.
 */
export async function createDevPki(serverNames: string[] = []): Promise<Omit<DevCerts, "dir">> {
  const caKey = newP256();
  const caKeys = await toCryptoKeys(caKey, P256);
  const now = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + 10 * 365 * 24 * 3600 * 1000);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=bmaas development CA",
    notBefore: now,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const leaf = async (cn: string, usage: string, sans: x509.JsonGeneralName[]): Promise<PemPair> => {
    const key = newP256();
    const keys = await toCryptoKeys(key, P256);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${cn}`,
      issuer: caCert.subject,
      notBefore: now,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([usage]),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
        ...(sans.length ? [new x509.SubjectAlternativeNameExtension(sans)] : []),
      ],
    });
    return { cert: pemCert(cert), key: pemKey(key) };
  };

  const names = new Set(["localhost", hostname(), ...serverNames]);
  const sans: x509.JsonGeneralName[] = [
    ...[...names].map((n) => ({ type: "dns" as const, value: n })),
    { type: "ip", value: "127.0.0.1" },
    { type: "ip", value: "::1" },
  ];
  return {
    ca: { cert: pemCert(caCert), key: pemKey(caKey) },
    server: await leaf("bmaas-server", x509.ExtendedKeyUsage.serverAuth, sans),
    operator: await leaf("operator", x509.ExtendedKeyUsage.clientAuth, []),
  };
}

/**
 * Loads the development PKI from dir, creating it on first use. Later starts
 * reuse the same files so that operators and agents keep trusting the server.
 */
export async function loadOrCreateDevCerts(dir: string): Promise<DevCerts & { created: boolean }> {
  const f = (name: string) => join(dir, name);
  const all = Object.values(DEV_CERT_FILES);
  const present = all.filter((n) => existsSync(f(n)));
  let created = false;
  if (present.length === 0) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const pki = await createDevPki();
    const write = (name: string, data: string, mode: number) => writeFileSync(f(name), data, { mode });
    write(DEV_CERT_FILES.caCert, pki.ca.cert, 0o644);
    write(DEV_CERT_FILES.caKey, pki.ca.key, 0o600);
    write(DEV_CERT_FILES.serverCert, pki.server.cert, 0o644);
    write(DEV_CERT_FILES.serverKey, pki.server.key, 0o600);
    write(DEV_CERT_FILES.operatorCert, pki.operator.cert, 0o644);
    write(DEV_CERT_FILES.operatorKey, pki.operator.key, 0o600);
    created = true;
  } else if (present.length !== all.length) {
    const missing = all.filter((n) => !present.includes(n));
    throw new Error(`dev certificate directory ${dir} is incomplete (missing ${missing.join(", ")}): remove it to start afresh`);
  }
  const read = (name: string) => readFileSync(f(name), "utf8");
  return {
    dir,
    created,
    ca: { cert: read(DEV_CERT_FILES.caCert), key: read(DEV_CERT_FILES.caKey) },
    server: { cert: read(DEV_CERT_FILES.serverCert), key: read(DEV_CERT_FILES.serverKey) },
    operator: { cert: read(DEV_CERT_FILES.operatorCert), key: read(DEV_CERT_FILES.operatorKey) },
  };
}

/**
 * The ephemeral self-signed client certificate an agent presents, after the Go
 * agents' template: serial 1, empty subject, valid from now until the end of
 * 9999, digitalSignature + keyEncipherment, clientAuth, basic constraints.
 * The server ignores everything but the key; possession is proven by TLS.
 */
export async function createAgentCertificate(privateKey: KeyObject): Promise<PemPair> {
  const keys = await toCryptoKeys(privateKey);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "",
    notBefore: new Date(),
    notAfter: FAR_FUTURE,
    keys,
    signingAlgorithm: ED25519,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ],
  });
  return { cert: pemCert(cert), key: pemKey(privateKey) };
}

/** A new Ed25519 agent key. */
export function generateAgentKey(): KeyObject {
  return newEd25519();
}
