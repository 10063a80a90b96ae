import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newAgent, type Pki } from "./helpers/server.js";
import { ROOT, runScript, type Run } from "./helpers/process.js";

// bmaas-server and bmctl run as real processes (through tsx, so the tests need
// no build step) against each other on ephemeral ports.

const TSX = ["--import", "tsx"];
const run = runScript;

interface Started {
  proc: ChildProcess;
  publicAddress: string;
  internalAddress: string;
  exited: Promise<number | null>;
}

/** Starts bmaas-server and waits for its "listening" log line. */
function startServer(args: string[]): Promise<Started> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...TSX, join(ROOT, "cmd", "bmaas-server.ts"), ...args], { cwd: ROOT });
    const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
    let out = "";
    let err = "";
    proc.stderr.on("data", (d) => (err += d));
    proc.stdout.on("data", (d: Buffer) => {
      out += d;
      for (const line of out.split("\n")) {
        if (!line.startsWith("{")) continue;
        const log = JSON.parse(line) as { msg: string; public?: string; internal?: string };
        if (log.msg === "listening") resolve({ proc, publicAddress: log.public!, internalAddress: log.internal!, exited });
      }
    });
    void exited.then((code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
}

/** What an agent needs of the PKI: the CA to verify the server. */
function caOnly(certs: string): Pki {
  return {
    ca: { cert: readFileSync(join(certs, "ca.pem"), "utf8"), key: "" },
    server: { cert: "", key: "" },
    operator: { cert: "", key: "" },
  };
}

describe("bmaas-server and bmctl as processes", () => {
  let dir: string;
  let certs: string;
  let server: Started;
  let bmctl: (...args: string[]) => Promise<Run>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bmaas-cmd-"));
    certs = join(dir, "certs");
    server = await startServer([
      "--dev-certs", certs,
      "--database-url", join(dir, "db"),
      "--public-listen", "127.0.0.1:0",
      "--internal-listen", "127.0.0.1:0",
      "--metrics-listen", "127.0.0.1:0",
    ]);
    bmctl = (...args) => run("bmctl.ts", ["--server", server.internalAddress, "--certs-dir", certs, ...args]);
  });

  afterAll(async () => {
    if (server && server.proc.exitCode === null) server.proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates a machine, registers a key, shows the agent's heartbeat and hardware", async () => {
    const created = await bmctl("machine", "create", "--provider", "equinix", "--provider-id", "da-1");
    expect(created.code).toBe(0);
    const machineId = created.stdout.trim();
    expect(machineId).toMatch(/^[0-9a-f-]{36}$/);

    const agent = await newAgent(server.publicAddress, caOnly(certs));
    const reg = await bmctl("agent", "register", machineId, Buffer.from(agent.publicKey).toString("hex"));
    expect(reg.code).toBe(0);
    expect(reg.stdout).toMatch(/^registered key sha256:[0-9a-f]{64}\n$/);

    await agent.client.heartbeat({
      machineId,
      hardwareReport: { report: { manufacturer: "ACME", cpu: [{ cores: 8, hardwareThreads: 16 }] } },
    });
    agent.client.close();

    const human = await bmctl("machine", "get", machineId);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/heartbeat\s+\S+Z \(\d+s ago\)/);
    expect(human.stdout).toContain("ACME");
    expect(human.stdout).toMatch(/8 cores, 16 threads/);
    expect(human.stdout).toContain("equinix / da-1");

    const json = await bmctl("machine", "get", machineId, "--json");
    const m = JSON.parse(json.stdout) as { machineId: string; hardwareReport: { report: { cpu: { hardwareThreads: number }[] } } };
    expect(m.machineId).toBe(machineId);
    expect(m.hardwareReport.report.cpu[0]!.hardwareThreads).toBe(16);

    const inst = await bmctl("install", "request", machineId, "--generation", "123", "--root-device", "/dev/sda", "--image-host", "r.example", "--image-repository", "os", "--image-tag", "v1");
    expect(inst.code).toBe(0);
    const after = await bmctl("machine", "get", machineId);
    expect(after.stdout).toMatch(/generation 123 to \/dev\/sda, image r\.example\/os:v1 .*pending/);
  });

  it("accepts the key in base64 too", async () => {
    const machineId = (await bmctl("machine", "create")).stdout.trim();
    const r = await bmctl("agent", "register", machineId, Buffer.alloc(32, 0).toString("base64"));
    // 32 zero bytes decode, but are not a usable Ed25519 key: the server says so.
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^bmctl: public_key is not a valid Ed25519 public key \(small order\)\n$/);
    const ok = await bmctl("agent", "register", machineId, Buffer.from((await newAgent(server.publicAddress, caOnly(certs))).publicKey).toString("base64"));
    expect(ok.code).toBe(0);
  });

  it("answers bad input with one line and a non-zero exit", async () => {
    const dup = await bmctl("machine", "create", "--provider", "equinix", "--provider-id", "dup");
    expect(dup.code).toBe(0);
    const cases: [string[], RegExp][] = [
      [["machine", "create", "--provider", "equinix", "--provider-id", "dup"], /already has a machine/],
      [["machine", "get", "not-a-uuid"], /"not-a-uuid" is not a machine ID/],
      [["machine", "get", "0b6f1d3e-0000-4000-8000-000000000000"], /not found/],
      [["agent", "register", "0b6f1d3e-0000-4000-8000-000000000000", "zz"], /32-byte Ed25519 public key/],
      [["install", "request", "0b6f1d3e-0000-4000-8000-000000000000", "--generation", "-1", "--root-device", "/dev/sda"], /positive 64-bit integer/],
    ];
    for (const [args, message] of cases) {
      const r = await bmctl(...args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
    }
  });

  it("says so in one line when the server cannot be reached", async () => {
    const r = await run("bmctl.ts", ["--server", "127.0.0.1:1", "--certs-dir", certs, "machine", "create"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^bmctl: cannot reach the server at 127\.0\.0\.1:1/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("refuses to start on a port in use, with one line", async () => {
    const port = server.internalAddress.split(":").pop()!;
    const r = await run("bmaas-server.ts", ["--dev-certs", certs, "--database-url", "memory://", "--public-listen", "127.0.0.1:0", "--internal-listen", `127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^bmaas-server: cannot listen for operators on 127\.0\.0\.1:\d+: address already in use\n$/);
  });

  it("refuses bad flags and an unreachable database, with one line each", async () => {
    const badUrl = await run("bmaas-server.ts", ["--dev-certs", certs, "--database-url", "postgres://nobody@127.0.0.1:1/x"]);
    expect(badUrl.code).not.toBe(0);
    expect(badUrl.stderr).toMatch(/^bmaas-server: cannot open database: .*ECONNREFUSED.*\n$/);
    const noTls = await run("bmaas-server.ts", ["--database-url", "memory://"]);
    expect(noTls.code).not.toBe(0);
    expect(noTls.stderr).toMatch(/^bmaas-server: TLS is required/);
    const badFlag = await run("bmaas-server.ts", ["--max-request-bytes", "lots"]);
    expect(badFlag.code).not.toBe(0);
    expect(badFlag.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("reuses its dev certificates and stops cleanly on SIGTERM", async () => {
    const ca = readFileSync(join(certs, "ca.pem"), "utf8");
    server.proc.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    // Same directory again: same CA, and the data written before is still there.
    const again = await startServer(["--dev-certs", certs, "--database-url", join(dir, "db"), "--public-listen", "127.0.0.1:0", "--internal-listen", "127.0.0.1:0", "--metrics-listen", ""]);
    try {
      expect(readFileSync(join(certs, "ca.pem"), "utf8")).toBe(ca);
      const r = await run("bmctl.ts", ["--server", again.internalAddress, "--certs-dir", certs, "machine", "create", "--provider", "equinix", "--provider-id", "da-1"]);
      expect(r.stderr).toMatch(/already has a machine/);
    } finally {
      again.proc.kill("SIGTERM");
      expect(await again.exited).toBe(0);
    }
  });
});

// Keeps the port-0 helper honest: listening on 0 yields a real port.
it("ephemeral ports are real", async () => {
  const s = createServer().listen(0, "127.0.0.1");
  await new Promise((r) => s.once("listening", r));
  expect((s.address() as { port: number }).port).toBeGreaterThan(0);
  s.close();
});
