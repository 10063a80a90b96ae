import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createAgentCertificate, createDevPki, generateAgentKey } from "./certs.js";

describe("development PKI", () => {
  it("is ECDSA P-256 (verifiable by gRPC C-core stacks), while agent certificates stay Ed25519", async () => {
    const pki = await createDevPki(["bmaas.test"]);
    const ca = new X509Certificate(pki.ca.cert);
    for (const pem of [pki.ca.cert, pki.server.cert, pki.operator.cert]) {
      const cert = new X509Certificate(pem);
      expect(cert.publicKey.asymmetricKeyType).toBe("ec");
      expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
      expect(cert.verify(ca.publicKey)).toBe(true);
    }
    expect(new X509Certificate(pki.server.cert).checkHost("bmaas.test")).toBe("bmaas.test");
    const agent = new X509Certificate((await createAgentCertificate(generateAgentKey())).cert);
    expect(agent.publicKey.asymmetricKeyType).toBe("ed25519");
  });
});
