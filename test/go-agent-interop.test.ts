import { execFile, execFileSync, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rawEd25519PublicKey } from "../lib/certs.js";
import { testBackends } from "./helpers/databases.js";
import { startTestServer } from "./helpers/server.js";

// The wire format is a hard contract with unmodified Go agents (grpc-go,
// crypto/tls). This builds a minimal Go agent (test/interop/go-agent) with
// Debian's Go toolchain and gRPC sources and runs it against a real server.
// CI installs them; elsewhere the suite is skipped when `go` is missing.

const hasGo = spawnSync("go", ["version"]).status === 0;
if (!hasGo && process.env.CI) throw new Error("CI must run the Go agent interop test: install golang-go and golang-google-grpc-dev");

const GOPATH = process.env.BMAAS_GOPATH ?? "/usr/share/gocode";

interface GoResult {
  code: number;
  message: string;
  generation: number;
}

describe.skipIf(!hasGo)("an unmodified-style Go agent (grpc-go + crypto/tls)", () => {
  let dir: string;
  let binary: string;
  let caFile: string;
  let t: Awaited<ReturnType<typeof startTestServer>>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bmaas-go-"));
    binary = join(dir, "go-agent");
    execFileSync("go", ["build", "-o", binary, "."], {
      cwd: join(import.meta.dirname, "interop", "go-agent"),
      env: { ...process.env, GO111MODULE: "off", GOPATH, GOCACHE: join(dir, "cache") },
      stdio: "pipe",
    });
    t = await startTestServer(testBackends()[0]!);
    caFile = join(dir, "ca.pem");
    writeFileSync(caFile, t.pki.ca.cert);
  });

  afterAll(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A Go agent identity: the seed it derives its key from, and the public key. */
  function goIdentity() {
    const key = generateKeyPairSync("ed25519").privateKey;
    const seed = Buffer.from(key.export({ format: "jwk" }).d!, "base64url").toString("hex");
    return { seed, publicKey: rawEd25519PublicKey(key) };
  }

  // Asynchronous: the server under test runs in this process's event loop.
  async function runGo(service: string, machineId: string, seed: string, reportGeneration?: bigint): Promise<GoResult> {
    const address = t.server.publicAddress.replace("127.0.0.1", "localhost");
    const args = [address, service, machineId, seed, caFile, ...(reportGeneration ? [String(reportGeneration)] : [])];
    const { stdout } = await promisify(execFile)(binary, args, { encoding: "utf8", timeout: 20_000 });
    return JSON.parse(stdout.trim()) as GoResult;
  }

  it.each(["cloud.bmaas.server.api.AgentCallback", "cloud.agent.api.AgentCallback"])("heartbeats on %s with its hardware report", async (service) => {
    const { machineId } = await t.operator.createMachine({});
    const id = goIdentity();
    await t.operator.registerAgent({ machineId, publicKey: id.publicKey });

    expect(await runGo(service, machineId, id.seed)).toMatchObject({ code: grpc.status.OK });
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.agentHeartbeat?.lastHeartbeatAt).toBeDefined();
    expect(m.hardwareReport?.report?.manufacturer).toBe("GoAgent");
    expect(m.hardwareReport?.report?.cpu[0]?.hardwareThreads).toBe(4);
  });

  it("gets UNAUTHENTICATED for a key that is not registered", async () => {
    const { machineId } = await t.operator.createMachine({});
    await t.operator.registerAgent({ machineId, publicKey: goIdentity().publicKey });
    const r = await runGo("cloud.agent.api.AgentCallback", machineId, goIdentity().seed);
    expect(r.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it("receives an installation request and stops it with a report", async () => {
    const { machineId } = await t.operator.createMachine({});
    const id = goIdentity();
    await t.operator.registerAgent({ machineId, publicKey: id.publicKey });
    await t.operator.setInstallationRequest({ machineId, generation: 123n, rootDevice: "/dev/sda" });
    expect((await runGo("cloud.bmaas.server.api.AgentCallback", machineId, id.seed)).generation).toBe(123);
    expect((await runGo("cloud.bmaas.server.api.AgentCallback", machineId, id.seed, 123n)).generation).toBe(0);
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.installationReport).toMatchObject({ generation: 123n, success: true });
  });
});
