import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDevPki } from "../lib/certs.js";
import { testBackends } from "./helpers/databases.js";
import { commandLine, ROOT, runCommand } from "./helpers/process.js";
import { newAgent, startTestServer, writeCertsDir } from "./helpers/server.js";

// bmctl's fleet commands as processes against a real server.

describe("bmctl fleet commands", () => {
  let t: Awaited<ReturnType<typeof startTestServer>>;
  let dir: string;
  let certs: string;
  const bmctl = (...args: string[]) => runCommand("bmctl", ["--server", t.server.internalAddress, "--certs-dir", certs, ...args]);

  beforeAll(async () => {
    t = await startTestServer(testBackends()[0]!);
    dir = mkdtempSync(join(tmpdir(), "bmctl-fleet-"));
    certs = writeCertsDir(join(dir, "certs"), t.pki);
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function heartbeatingMachine(provider: string, providerId: string) {
    const { machineId } = await t.operator.createMachine({ provider, providerId });
    const agent = await newAgent(t.server.publicAddress, t.pki);
    await t.operator.registerAgent({ machineId, publicKey: agent.publicKey });
    await agent.client.heartbeat({ machineId, hardwareReport: { report: { cpu: [{ hardwareThreads: 8 }], memoryInstalledBytes: 1024n ** 3n } } });
    return { machineId, agent };
  }

  it("lists machines as a table with ages, as JSON, filtered, across pages", async () => {
    const a = await heartbeatingMachine("listco", "a");
    const ids = [a.machineId];
    for (let i = 0; i < 4; i++) ids.push((await t.operator.createMachine({ provider: "listco", providerId: `n${i}` })).machineId);

    const human = await bmctl("machine", "list", "--provider", "listco");
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout.split("\n")[0]).toMatch(/^MACHINE\s+PROVIDER\s+HEARTBEAT\s+STATE/);
    expect(human.stdout).toMatch(new RegExp(`${a.machineId}\\s+listco/a\\s+\\d+s ago\\s+fresh`));

    const page = await bmctl("machine", "list", "--provider", "listco", "--page-size", "2");
    expect(page.stdout).toMatch(/more: --page-token \S+/);
    const all = await bmctl("machine", "list", "--provider", "listco", "--page-size", "2", "--all", "--json");
    const rows = JSON.parse(all.stdout) as { machineId: string }[];
    expect(rows.map((r) => r.machineId).sort()).toEqual([...ids].sort());

    const never = JSON.parse((await bmctl("machine", "list", "--provider", "listco", "--heartbeat", "never", "--json")).stdout) as unknown[];
    expect(never).toHaveLength(4);
    const hw = JSON.parse((await bmctl("machine", "list", "--provider", "listco", "--has-hardware", "--json")).stdout) as { machineId: string }[];
    expect(hw.map((r) => r.machineId)).toEqual([a.machineId]);
    const found = JSON.parse((await bmctl("machine", "list", "--search", a.machineId.slice(0, 13), "--json")).stdout) as { machineId: string }[];
    expect(found.map((r) => r.machineId)).toContain(a.machineId);
    a.agent.client.close();
  });

  it("shows recent history with machine get", async () => {
    const a = await heartbeatingMachine("histco", "h");
    const r = await bmctl("machine", "get", a.machineId);
    expect(r.stdout).toMatch(/recent history \(newest first\):\n.*hardware_report_changed[\s\S]*first_heartbeat[\s\S]*agent_registered[\s\S]*machine_created/);
    const json = JSON.parse((await bmctl("machine", "get", a.machineId, "--json")).stdout) as { recentHistory: { kind: string }[] };
    expect(json.recentHistory.map((e) => e.kind)).toContain("first_heartbeat");
    a.agent.client.close();
  });

  it("watches events until interrupted", async () => {
    const { machineId } = await t.operator.createMachine({});
    const p = spawn(...commandLine("bmctl", ["--server", t.server.internalAddress, "--certs-dir", certs, "machine", "watch", machineId]), { cwd: ROOT });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    await new Promise<void>((resolve) => p.stderr.on("data", (d: Buffer) => d.toString().includes("watching") && resolve()));
    const agent = await newAgent(t.server.publicAddress, t.pki);
    await t.operator.registerAgent({ machineId, publicKey: agent.publicKey });
    await agent.client.heartbeat({ machineId });
    agent.client.close();
    for (let i = 0; i < 100 && !out.includes("first_heartbeat"); i++) await new Promise((r) => setTimeout(r, 100));
    p.kill("SIGINT");
    const code = await new Promise<number | null>((r) => p.on("exit", r));
    expect(code).toBe(0);
    const lines = out.trim().split("\n");
    expect(lines[0]).toMatch(new RegExp(`Z  ${machineId}  agent_registered  \\{"keyFingerprint":"[0-9a-f]{64}","admission":"preauthorized","by":"CN=operator"\\}$`));
    expect(lines[1]).toMatch(new RegExp(`Z  ${machineId}  first_heartbeat$`));
  });

  it("revokes agents and deletes machines", async () => {
    const a = await heartbeatingMachine("delco", "d");
    const revoke = await bmctl("agent", "revoke", a.machineId);
    expect(revoke.stdout).toMatch(/^revoked key sha256:[0-9a-f]{64}\n$/);
    const again = await bmctl("agent", "revoke", a.machineId);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/^bmctl: machine \S+ has no registered agent\n$/);
    expect((await bmctl("machine", "delete", a.machineId)).stdout).toBe(`deleted ${a.machineId}\n`);
    const gone = await bmctl("machine", "get", a.machineId);
    expect(gone.stderr).toMatch(/^bmctl: machine \S+ not found\n$/);
    a.agent.client.close();
  });

  it("updates what the provider says of a machine", async () => {
    const { machineId } = await t.operator.createMachine({ provider: "updco", providerId: "u" });
    const r = await bmctl("machine", "update-provider", machineId, "--status", "active", "--location", "fra2");
    expect(r.stdout).toBe(`updated ${machineId}\n`);
    expect((await bmctl("machine", "get", machineId)).stdout).toMatch(/provider\s+updco \/ u \(status active, location fra2\)/);
  });

  it("prints fleet stats", async () => {
    await heartbeatingMachine("statco", "s");
    const r = await bmctl("fleet", "stats");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^MACHINES\s+PROVIDED\s+HEARTBEATING/);
    expect(r.stdout).toMatch(/statco\s+-\s+1\s+8\s+1 GiB/);
    const json = JSON.parse((await bmctl("fleet", "stats", "--json")).stdout) as { machines: string };
    expect(BigInt(json.machines)).toBe(BigInt((await t.bmdb.fleetStats()).counters.machines));
  });

  it("names each kind of failure distinctly, in one line", async () => {
    const foreign = await createDevPki();
    const foreignDir = writeCertsDir(join(dir, "foreign"), t.pki, foreign.operator);
    const cases: [string[], RegExp][] = [
      [["--server", t.server.internalAddress, "--certs-dir", certs, "machine", "get", "0b6f1d3e-0000-4000-8000-000000000000"], /^bmctl: machine 0b6f1d3e-0000-4000-8000-000000000000 not found$/],
      [["--server", t.server.internalAddress, "--certs-dir", certs, "machine", "get", "12345"], /"12345" is not a machine ID/],
      [["--server", "127.0.0.1:1", "--certs-dir", certs, "machine", "list"], /^bmctl: cannot reach the server at 127\.0\.0\.1:1: connection refused$/],
      [["--server", t.server.internalAddress, "--certs-dir", foreignDir, "machine", "list"], /^bmctl: the server at \S+ refused our client certificate/],
    ];
    const seen = new Set<string>();
    const runs = await Promise.all(cases.map(([args]) => runCommand("bmctl", args)));
    for (const [i, [args, message]] of cases.entries()) {
      const r = runs[i]!;
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(message);
      seen.add(r.stderr);
    }
    expect(seen.size).toBe(cases.length);
  });

  it("has --help with an example on every command", async () => {
    const commands = [
      ["machine", "create"], ["machine", "list"], ["machine", "get"], ["machine", "watch"], ["machine", "delete"],
      ["machine", "update-provider"], ["agent", "register"], ["agent", "revoke"], ["install", "request"], ["fleet", "stats"], [],
    ];
    const runs = await Promise.all(commands.map((c) => runCommand("bmctl", [...c, "--help"])));
    for (const [i, c] of commands.entries()) {
      const r = runs[i]!;
      expect(r.code, c.join(" ")).toBe(0);
      expect(r.stdout, c.join(" ")).toMatch(/Example:\n  bmctl /);
    }
  });
});
