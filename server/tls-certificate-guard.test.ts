import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { createAgentCertificate, generateAgentKey } from "../lib/certs.js";
import { createIntermediate, createTestCa, issueAgentCert } from "../test/helpers/enrollment-pki.js";
import { certificateGuard, type CertificateGuard } from "./tls-certificate-guard.js";

// The native guard's check, fed TLS 1.3 Certificate message bodies directly:
// what it accepts and refuses, and that no malformed body crashes or passes
// it. The handshake itself is tested in agent-listener.test.ts.

const u24 = (n: number) => Buffer.of((n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);

/** certificate_request_context (empty), then the entries, each with empty extensions. */
function certificateMessage(ders: Buffer[]): Buffer {
  const entries = Buffer.concat(ders.map((d) => Buffer.concat([u24(d.length), d, Buffer.of(0, 0)])));
  return Buffer.concat([Buffer.of(0), u24(entries.length), entries]);
}

const derOf = (pem: string) =>
  pem
    .split(/(?=-----BEGIN CERTIFICATE-----)/)
    .filter((p) => p.includes("BEGIN CERTIFICATE"))
    .map((p) => Buffer.from(new X509Certificate(p).raw));

describe("native TLS certificate guard", () => {
  let guard: CertificateGuard;
  let leaf: Buffer;
  let stranger: Buffer;
  let chain: Buffer[];
  let root: Buffer;

  beforeAll(async () => {
    const loaded = certificateGuard();
    expect(loaded.error).toBeUndefined();
    guard = loaded.guard!;
    leaf = derOf((await createAgentCertificate(generateAgentKey())).cert)[0]!;
    stranger = derOf((await createAgentCertificate(generateAgentKey())).cert)[0]!;
    const ca = await createTestCa("root");
    const intermediate = await createIntermediate("intermediate", ca);
    chain = derOf((await issueAgentCert(intermediate, "00000000-0000-4000-8000-000000000000", { intermediates: [intermediate] })).chain);
    root = derOf(ca.pem)[0]!;
  });

  it("accepts a leaf alone, no certificate at all, and a chain in either order", () => {
    expect(guard.allLinked(certificateMessage([leaf]))).toBe(true);
    expect(guard.allLinked(certificateMessage([]))).toBe(true);
    expect(chain.length).toBe(2);
    expect(guard.allLinked(certificateMessage(chain))).toBe(true);
    expect(guard.allLinked(certificateMessage([...chain, root]))).toBe(true);
    expect(guard.allLinked(certificateMessage([chain[0]!, root, chain[1]!]))).toBe(true);
  });

  it("refuses a certificate that does not chain to the leaf", () => {
    expect(guard.allLinked(certificateMessage([leaf, stranger]))).toBe(false);
    expect(guard.allLinked(certificateMessage([leaf, leaf]))).toBe(false);
    expect(guard.allLinked(certificateMessage([...chain, stranger]))).toBe(false);
    // The root without the intermediate does not chain to the leaf either.
    expect(guard.allLinked(certificateMessage([chain[0]!, root]))).toBe(false);
    expect(guard.allLinked(certificateMessage([leaf, ...Array.from({ length: 20 }, () => stranger)]))).toBe(false);
  });

  it("refuses bodies that do not parse", () => {
    const good = certificateMessage([leaf]);
    expect(guard.allLinked(Buffer.alloc(0))).toBe(false);
    expect(guard.allLinked(good.subarray(0, good.length - 1))).toBe(false);
    expect(guard.allLinked(Buffer.concat([good, Buffer.of(0)]))).toBe(false);
    // A context length past the end.
    expect(guard.allLinked(Buffer.of(200, 0, 0, 0))).toBe(false);
    // Garbage where a certificate should be, beside a real one, either way round.
    expect(guard.allLinked(certificateMessage([leaf, Buffer.from("not a certificate")]))).toBe(false);
    expect(guard.allLinked(certificateMessage([Buffer.from("not a certificate"), leaf]))).toBe(false);
    // A certificate with bytes after its DER inside its entry.
    expect(guard.allLinked(certificateMessage([chain[0]!, Buffer.concat([chain[1]!, Buffer.of(0)])]))).toBe(false);
    // A single entry is not parsed here (OpenSSL parses it next and fails the
    // handshake itself if it is no certificate): only its framing is checked.
    expect(guard.allLinked(certificateMessage([Buffer.from("not a certificate")]))).toBe(true);
    // More than 16 entries is refused without parsing them.
    expect(guard.allLinked(certificateMessage(Array.from({ length: 17 }, () => chain[1]!)))).toBe(false);
  });

  it("answers 20,000 mutated and truncated bodies without crashing", () => {
    const bases = [certificateMessage([leaf]), certificateMessage(chain), certificateMessage([leaf, stranger])];
    let seed = 0x2545f491;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const body = Buffer.from(bases[rand(bases.length)]!);
      const flips = 1 + rand(8);
      for (let f = 0; f < flips; f++) body[rand(body.length)] = rand(256);
      const cut = rand(4) === 0 ? body.subarray(0, rand(body.length)) : body;
      if (guard.allLinked(cut)) accepted++;
    }
    // Mutated bodies may still parse and link (a flipped bit in a signature
    // does not change who issued whom: Node would show those too, and the
    // listener counts what Node shows); the point is that every call returned.
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(20_000);
    expect(guard.allLinked(certificateMessage([leaf, stranger]))).toBe(false);
  });
});
