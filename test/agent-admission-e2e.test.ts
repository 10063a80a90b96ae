import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadKeyFile } from "../agent/identity.js";
import { parseEnrollmentCas } from "../server/enrollment-ca.js";
import { testBackends } from "./helpers/databases.js";
import { createTestCa, issueAgentCert, type TestCa } from "./helpers/enrollment-pki.js";
import { runCommand } from "./helpers/process.js";
import { startTestServer, writeCertsDir } from "./helpers/server.js";

// The reference agent as a process waiting for admission, then admitted by an
// operator; and admitted by an enrollment CA with --cert.

describe("bmaas-agent admission end to end", () => {
  let t: Awaited<ReturnType<typeof startTestServer>>;
  let ca: TestCa;
  let dir: string;
  let certs: string;
  const bmctl = (...args: string[]) => runCommand("bmctl", ["--server", t.server.internalAddress, "--certs-dir", certs, ...args]);
  const agent = (...args: string[]) => runCommand("bmaas-agent", args);
  const run = (machineId: string, key: string, ...extra: string[]) =>
    agent("run", "--once", "--server", t.server.publicAddress, "--machine-id", machineId, "--key", key, "--ca", join(certs, "ca.pem"),
      "--state-dir", join(dir, `state-${machineId}`), ...extra);

  beforeAll(async () => {
    ca = await createTestCa("fleet enrollment CA");
    t = await startTestServer(testBackends()[0]!, { enrollmentCas: parseEnrollmentCas("ca.pem", ca.pem) });
    dir = mkdtempSync(join(tmpdir(), "bmaas-agent-admission-"));
    certs = writeCertsDir(join(dir, "certs"), t.pki);
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("says it is not admitted while pending, and heartbeats once an operator accepted its key", async () => {
    const key = join(dir, "pending.key");
    const pub = (await agent("keygen", "--key", key)).stdout.trim();
    const machineId = (await bmctl("machine", "create")).stdout.trim();
    const waiting = await run(machineId, key);
    expect(waiting.code).toBe(16);
    expect(waiting.stderr).toContain("not admitted yet: pending operator acceptance or a wrong key");
    const list = await bmctl("agent", "pending", "--machine", machineId, "--json");
    const [req] = JSON.parse(list.stdout) as { keyFingerprint: string; hardwareMatch: string }[];
    // The reference agent sends its hardware report until it is accepted: the operator sees it.
    expect(req!.hardwareMatch).toBe("HARDWARE_MATCH_NO_ACCEPTED_REPORT");
    expect((await bmctl("agent", "accept", machineId, req!.keyFingerprint)).code).toBe(0);
    const admitted = await run(machineId, key);
    expect(admitted.code, admitted.stderr).toBe(0);
    expect(pub).toMatch(/^[0-9a-f]{64}$/);
  });

  it("is admitted on its first heartbeat with --cert signed by an enrollment CA; refuses a certificate for another key", async () => {
    const key = join(dir, "enrolled.key");
    expect((await agent("keygen", "--key", key)).code).toBe(0);
    const machineId = (await bmctl("machine", "create")).stdout.trim();
    const cert = join(dir, "enrolled.pem");
    writeFileSync(cert, (await issueAgentCert(ca, machineId, { key: loadKeyFile(key) })).chain);
    const r = await run(machineId, key, "--cert", cert);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse((await bmctl("machine", "get", machineId, "--json")).stdout) as { agentStarted: { admission: string; admittedBy: string } };
    expect(m.agentStarted.admission).toBe("ADMISSION_STATE_ACCEPTED");
    expect(m.agentStarted.admittedBy).toMatch(/^enrollment CA CN=fleet enrollment CA \(sha256:[0-9a-f]{16}\)$/);

    const otherCert = join(dir, "other.pem");
    writeFileSync(otherCert, (await issueAgentCert(ca, machineId)).chain);
    const wrong = await run(machineId, key, "--cert", otherCert);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toBe(`bmaas-agent: ${otherCert} is not a certificate for the key of --key (its public key differs)\n`);
  });
});
