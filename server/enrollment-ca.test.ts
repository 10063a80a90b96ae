import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createIntermediate, createTestCa, issueAgentCert } from "../test/helpers/enrollment-pki.js";
import { enrollmentClaim, parseEnrollmentCas } from "./enrollment-ca.js";

// What an enrollment claim requires, certificate by certificate (the
// listener-level behaviour is in test/admission-e2e.test.ts).

const MACHINE = "9b4b8487-6a66-4ca3-b732-0f789f43f1a8";
const chainOf = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b));

describe("enrollment claims", () => {
  it("names the machine of a leaf signed by an enrollment CA, directly or through intermediates", async () => {
    const ca = await createTestCa("root");
    const cas = parseEnrollmentCas("root.pem", ca.pem);
    expect(enrollmentClaim(chainOf((await issueAgentCert(ca, MACHINE)).chain), cas)).toEqual({ machineId: MACHINE, ca: cas[0]!.name });
    const inter = await createIntermediate("inter", ca);
    expect(enrollmentClaim(chainOf((await issueAgentCert(inter, MACHINE, { intermediates: [inter] })).chain), cas)?.machineId).toBe(MACHINE);
    // The intermediate not sent: the chain does not reach the CA.
    expect(enrollmentClaim(chainOf((await issueAgentCert(inter, MACHINE)).chain), cas)).toBeUndefined();
  });

  it("makes no claim for an expired or not yet valid leaf, another CA, or a leaf without exactly one machine URI", async () => {
    const ca = await createTestCa("root");
    const cas = parseEnrollmentCas("root.pem", ca.pem);
    const day = 86400_000;
    const claim = async (c: Promise<{ chain: string }>) => enrollmentClaim(chainOf((await c).chain), cas);
    expect(await claim(issueAgentCert(ca, MACHINE, { notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day) }))).toBeUndefined();
    expect(await claim(issueAgentCert(ca, MACHINE, { notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 3 * day) }))).toBeUndefined();
    expect(await claim(issueAgentCert(await createTestCa("other"), MACHINE))).toBeUndefined();
    expect(await claim(issueAgentCert(ca, MACHINE, { uri: `urn:uuid:${MACHINE}` }))).toBeUndefined();
    expect(await claim(issueAgentCert(ca, MACHINE, { uri: "urn:bmaas:machine:not-a-uuid" }))).toBeUndefined();
  });

  it("refuses --enrollment-ca files without a CA certificate, with the file named", async () => {
    const ca = await createTestCa("root");
    const leaf = await issueAgentCert(ca, MACHINE);
    expect(() => parseEnrollmentCas("leaf.pem", leaf.chain)).toThrow(/^--enrollment-ca leaf\.pem: CN=agent is not a CA certificate$/);
    expect(() => parseEnrollmentCas("empty.pem", "nothing")).toThrow(/^--enrollment-ca empty\.pem: no PEM certificate in it$/);
    expect(parseEnrollmentCas("two.pem", ca.pem + (await createTestCa("second")).pem)).toHaveLength(2);
  });
});
