import { generateKeyPairSync, sign, verify, X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createAgentCertificate, generateAgentKey, rawEd25519PublicKey } from "../lib/certs.js";
import { decodeEd25519KeysLegacy, ed25519DecoderInUse } from "./ed25519-key-decode.js";

// The legacy Ed25519 decoding changes how OpenSSL dispatches, never what it
// computes: certificates' keys still come out right, and signatures are
// still checked, so a forged one fails. (The agent listener's handshakes run
// with it in every other test; agent-listener.test.ts refuses wrong keys.)

describe("Ed25519 keys decoded by OpenSSL's legacy method", () => {
  it("is installed once per process, and only when asked", () => {
    // Each test file runs in a process of its own: nothing installed it yet.
    expect(ed25519DecoderInUse()).toBe("provider");
    expect(decodeEd25519KeysLegacy()).toEqual({});
    expect(ed25519DecoderInUse()).toBe("legacy");
    expect(decodeEd25519KeysLegacy()).toEqual({});
  });

  it("decodes a certificate's key exactly", async () => {
    decodeEd25519KeysLegacy();
    const key = generateAgentKey();
    const x509 = new X509Certificate((await createAgentCertificate(key)).cert);
    expect(x509.publicKey.asymmetricKeyType).toBe("ed25519");
    expect(Buffer.from(rawEd25519PublicKey(x509.publicKey))).toEqual(Buffer.from(rawEd25519PublicKey(key)));
  });

  it("still verifies signatures: a certificate's own, a tampered one, a message's", async () => {
    decodeEd25519KeysLegacy();
    const key = generateAgentKey();
    const x509 = new X509Certificate((await createAgentCertificate(key)).cert);
    expect(x509.verify(x509.publicKey)).toBe(true);
    const tampered = Buffer.from(x509.raw);
    tampered[tampered.length - 3]! ^= 0x01; // inside the signature, the last field
    expect(new X509Certificate(tampered).verify(x509.publicKey)).toBe(false);
    const other = generateKeyPairSync("ed25519");
    expect(x509.verify(other.publicKey)).toBe(false);

    const message = Buffer.from("heartbeat");
    const signature = sign(null, message, key);
    expect(verify(null, message, x509.publicKey, signature)).toBe(true);
    expect(verify(null, Buffer.from("heartbeaT"), x509.publicKey, signature)).toBe(false);
    expect(verify(null, message, other.publicKey, signature)).toBe(false);
  });
});
