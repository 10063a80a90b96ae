import { cpus } from "node:os";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testBackends } from "./helpers/databases.js";
import { spawn } from "node:child_process";
import { writeHostileTree } from "../agent/hwreport/hostile-tree.js";
import { commandLine, ROOT, runCommand } from "./helpers/process.js";
import { startTestServer, writeCertsDir } from "./helpers/server.js";

// bmaas-agent and bmctl as processes against a real server: keygen →
// bmctl agent register → run --once → bmctl machine get shows this machine's
// real hardware; then an installation runs exactly once and stops the request.

describe("bmaas-agent end to end", () => {
  let t: Awaited<ReturnType<typeof startTestServer>>;
  let dir: string;
  let certs: string;
  const bmctl = (...args: string[]) => runCommand("bmctl", ["--server", t.server.internalAddress, "--certs-dir", certs, ...args]);
  const agent = (...args: string[]) => runCommand("bmaas-agent", args);
  const agentWithEnv = (env: NodeJS.ProcessEnv, ...args: string[]) => runCommand("bmaas-agent", args, env);

  beforeAll(async () => {
    t = await startTestServer(testBackends()[0]!, { agentHeartbeatIntervalMs: 7_000 });
    dir = mkdtempSync(join(tmpdir(), "bmaas-agent-e2e-"));
    certs = writeCertsDir(join(dir, "certs"), t.pki);
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("registers, heartbeats once with this machine's hardware, and installs exactly once", async () => {
    const key = join(dir, "agent.key");
    const keygen = await agent("keygen", "--key", key);
    expect(keygen.code).toBe(0);
    const pub = keygen.stdout.trim();
    expect(pub).toMatch(/^[0-9a-f]{64}$/);
    expect((await agent("pubkey", "--key", key)).stdout.trim()).toBe(pub);
    const again = await agent("keygen", "--key", key);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/refusing to overwrite/);

    const machineId = (await bmctl("machine", "create")).stdout.trim();
    expect((await bmctl("agent", "register", machineId, pub)).code).toBe(0);

    const state = join(dir, "state");
    const counter = join(dir, "installs");
    const installer = join(dir, "install.sh");
    // Appends the request it got on stdin: counts runs and shows the payload.
    writeFileSync(installer, `#!/bin/sh\ncat >> ${counter}\necho >> ${counter}\n`, { mode: 0o755 });
    const run = (...extra: string[]) =>
      agent("run", "--once", "--server", t.server.publicAddress, "--machine-id", machineId, "--key", key, "--ca", join(certs, "ca.pem"),
        "--state-dir", state, "--installer", installer, "--log-level", "info", ...extra);

    const first = await run();
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/Init -> Heartbeat/);
    expect(first.stderr).toMatch(/server suggested a heartbeat interval/);

    const m = JSON.parse((await bmctl("machine", "get", machineId, "--json")).stdout) as {
      agentHeartbeat?: unknown;
      hardwareReport: { report: { cpu: { hardwareThreads: number }[]; memoryInstalledBytes: string } };
    };
    expect(m.agentHeartbeat).toBeDefined();
    const threads = m.hardwareReport.report.cpu.reduce((a, c) => a + c.hardwareThreads, 0);
    expect(threads).toBe(cpus().length);
    const memTotal = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
    expect(Number(m.hardwareReport.report.memoryInstalledBytes)).toBeGreaterThanOrEqual(memTotal);

    expect((await bmctl("install", "request", machineId, "--generation", "42", "--root-device", "/dev/vda")).code).toBe(0);
    const installRun = await run();
    expect(installRun.code, installRun.stderr).toBe(0);
    expect(installRun.stderr).toMatch(/Heartbeat -> Install: server requested installation generation 42/);
    expect(readFileSync(counter, "utf8").trim().split("\n")).toHaveLength(1);
    expect(JSON.parse(readFileSync(counter, "utf8"))).toMatchObject({ generation: "42", metropolis: { rootDevice: "/dev/vda" } });

    const after = JSON.parse((await bmctl("machine", "get", machineId, "--json")).stdout) as {
      installationReport: { generation: string; success: boolean };
      installationPending?: boolean;
    };
    expect(after.installationReport).toMatchObject({ generation: "42", success: true });
    expect(after.installationPending ?? false).toBe(false);

    // The request is no longer sent, and the installer does not run again.
    const third = await run();
    expect(third.code).toBe(0);
    expect(third.stderr).not.toMatch(/-> Install/);
    expect(readFileSync(counter, "utf8").trim().split("\n")).toHaveLength(1);
  });

  it("heartbeats on its interval until SIGTERM, then exits 0", async () => {
    const key = join(dir, "loop.key");
    const pub = (await agent("keygen", "--key", key)).stdout.trim();
    const machineId = (await bmctl("machine", "create")).stdout.trim();
    await bmctl("agent", "register", machineId, pub);
    const p = spawn(...commandLine("bmaas-agent", ["run", "--server", t.server.publicAddress,
      "--machine-id", machineId, "--key", key, "--ca", join(certs, "ca.pem"), "--state-dir", join(dir, "s4"), "--interval", "0.2"]), { cwd: ROOT });
    let log = "";
    p.stderr.on("data", (d) => (log += d));
    // The server suggests 7 s (see beforeAll); wait for the first two heartbeats.
    for (let i = 0; i < 100 && (log.match(/Heartbeat -> Idle/g) ?? []).length < 1; i++) await new Promise((r) => setTimeout(r, 100));
    p.kill("SIGTERM");
    const code = await new Promise<number | null>((r) => p.on("exit", r));
    expect(code).toBe(0);
    expect(log).toMatch(/"msg":"stopping"/);
    expect(log).toMatch(/next heartbeat in [67]\.\ds/); // 7 s ± 10% jitter
    const m = JSON.parse((await bmctl("machine", "get", machineId, "--json")).stdout) as { agentHeartbeat?: unknown };
    expect(m.agentHeartbeat).toBeDefined();
  });

  it("exits with the gRPC status when the server refuses it", async () => {
    const key = join(dir, "stranger.key");
    await agent("keygen", "--key", key);
    const r = await agent("run", "--once", "--server", t.server.publicAddress, "--machine-id", "3f1e3a3c-8a9a-4c35-9f39-6f0b9b0f0c11",
      "--key", key, "--ca", join(certs, "ca.pem"), "--state-dir", join(dir, "s2"), "--log-level", "silent");
    expect(r.code).toBe(16); // UNAUTHENTICATED
    expect(r.stderr).toMatch(/^bmaas-agent: heartbeat failed: code 16: /);
  });

  it("can skip server verification with --insecure, and says so", async () => {
    const key = join(dir, "lab.key");
    const pub = (await agent("keygen", "--key", key)).stdout.trim();
    const machineId = (await bmctl("machine", "create")).stdout.trim();
    await bmctl("agent", "register", machineId, pub);
    const r = await agent("run", "--once", "--insecure", "--server", t.server.publicAddress, "--machine-id", machineId, "--key", key,
      "--state-dir", join(dir, "s3"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/NOT verified/);
  });

  it("refuses to run without a way to trust the server", async () => {
    const r = await agent("run", "--server", "localhost:1", "--machine-id", "3f1e3a3c-8a9a-4c35-9f39-6f0b9b0f0c11", "--key", join(dir, "agent.key"));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^bmaas-agent: give --ca FILE to verify the server, or --insecure/);
    expect(existsSync(join(dir, "agent.key"))).toBe(true);
  });

  it("takes BMAAS_AGENT_INSECURE=false as false, and refuses a value that is not a boolean", async () => {
    const args = ["run", "--once", "--server", "127.0.0.1:1", "--machine-id", "3f1e3a3c-8a9a-4c35-9f39-6f0b9b0f0c11", "--key", join(dir, "agent.key"), "--log-level", "silent"];
    const off = await agentWithEnv({ BMAAS_AGENT_INSECURE: "false" }, ...args);
    expect(off.code).toBe(2);
    expect(off.stderr).toMatch(/^bmaas-agent: give --ca FILE to verify the server, or --insecure/);
    const odd = await agentWithEnv({ BMAAS_AGENT_INSECURE: "maybe" }, ...args);
    expect(odd.code).not.toBe(0);
    expect(odd.stderr).toBe("error: option '--insecure [boolean]' value 'maybe' from env 'BMAAS_AGENT_INSECURE' is invalid. must be true or false (also 1/0, yes/no, on/off)\n");
  });

  it("reports hardware whose strings hold NULs, control characters and invalid UTF-8, and is accepted", async () => {
    const roots = writeHostileTree(join(ROOT, "test", "fixtures", "hw", "bare-metal-server"), join(dir, "hostile"));
    const key = join(dir, "hostile.key");
    const pub = (await agent("keygen", "--key", key)).stdout.trim();
    const machineId = (await bmctl("machine", "create")).stdout.trim();
    await bmctl("agent", "register", machineId, pub);
    const r = await agent("run", "--once", "--server", t.server.publicAddress, "--machine-id", machineId, "--key", key, "--ca", join(certs, "ca.pem"),
      "--state-dir", join(dir, "s5"), "--proc-root", roots.proc, "--sys-root", roots.sys, "--log-level", "silent");
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse((await bmctl("machine", "get", machineId, "--json")).stdout) as {
      hardwareReport: { report: { manufacturer: string; serialNumber: string; networkInterface: unknown[] }; warnings: string[] };
    };
    expect(m.hardwareReport.report.manufacturer).toBe("Supermicro");
    expect(m.hardwareReport.report.serialNumber).toHaveLength(256);
    expect(m.hardwareReport.report.networkInterface).toHaveLength(256);
    expect(m.hardwareReport.warnings[0]).toMatch(/^block_device: 302 entries found, only the first 256 reported$/);
  });
});
