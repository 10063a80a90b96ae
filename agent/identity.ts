import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { generateAgentKey, rawEd25519PublicKey } from "../lib/certs.js";
import { readNamedFile } from "../lib/read-file.js";

/**
 * Writes a new Ed25519 private key (PKCS#8 PEM, mode 0600) to path and returns
 * it. Refuses to overwrite: a machine's key is its identity, and replacing it
 * silently would lock the agent out until an operator registers the new one.
 */
export function createKeyFile(path: string): KeyObject {
  const key = generateAgentKey();
  const pem = key.export({ format: "pem", type: "pkcs8" });
  try {
    writeFileSync(path, pem, { mode: 0o600, flag: "wx" });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new Error(`${path} exists; refusing to overwrite an agent key`);
    throw new Error(`cannot write ${path}: ${(e as Error).message}`);
  }
  return key;
}

/** Reads an Ed25519 private key from a PEM file. */
export function loadKeyFile(path: string): KeyObject {
  const pem = readNamedFile("cannot read key", path);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new Error(`${path} is not a PEM private key`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`${path} holds a ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}

/** The public key as `bmctl agent register` takes it: 64 hex digits. */
export function publicKeyHex(key: KeyObject): string {
  return Buffer.from(rawEd25519PublicKey(key)).toString("hex");
}

/**
 * Reads a client certificate (PEM, the leaf first, optionally followed by
 * intermediates) for an enrollment CA, and checks that the leaf is for key:
 * a certificate for another key would only fail the TLS handshake, later and
 * less clearly.
 */
export function loadCertFile(path: string, key: KeyObject): string {
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`cannot read certificate ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(pem);
  } catch {
    throw new Error(`${path} is not a PEM certificate`);
  }
  if (!leaf.checkPrivateKey(key)) throw new Error(`${path} is not a certificate for the key of --key (its public key differs)`);
  if (new Date(leaf.validTo).getTime() < Date.now()) throw new Error(`${path} expired on ${new Date(leaf.validTo).toISOString()}`);
  return pem;
}
