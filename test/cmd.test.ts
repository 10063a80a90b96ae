import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Command, CommanderError, type OptionValues } from "commander";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AgentConfig, type AgentRunFlags } from "../agent/config.js";
import { BmdbConfig, type BmdbFlags } from "../cmd/private/bmdb-flags.js";
import { findDevCerts } from "../cmd/private/dev-certs.js";
import { OperatorService, WatchMachinesResponseSchema, type WatchMachinesRequest } from "../gen/bmaas/operator/v1/operator_pb.js";
import { serviceDefinition } from "../lib/grpc-adapter.js";
import { ServerConfig, type ServerFlags } from "../server/config.js";
import { newAgent, testPki, writeCertsDir, type Pki } from "./helpers/server.js";
import { ROOT, runCommand, type Run } from "./helpers/process.js";
import { startServerProcess, type ServerProcess } from "./helpers/server-process.js";

// bmaas-server and bmctl run as real processes (the built commands, see
// test/global-setup.ts) against each other on ephemeral ports.

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
  let server: ServerProcess;
  let bmctl: (...args: string[]) => Promise<Run>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bmaas-cmd-"));
    certs = join(dir, "certs");
    server = await startServerProcess([
      "--dev-certs", certs,
      "--database-url", join(dir, "db"),
      "--public-listen", "127.0.0.1:0",
      "--internal-listen", "127.0.0.1:0",
      "--metrics-listen", "127.0.0.1:0",
      "--web-listen", "127.0.0.1:0",
    ]);
    bmctl = (...args) => runCommand("bmctl", ["--server", server.internalAddress, "--certs-dir", certs, ...args]);
  });

  afterAll(async () => {
    await server?.kill();
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

    // The web view the banner names shows the same machine.
    await expect.poll(() => server.stdout()).toContain(`  web        ${server.webUrl}`);
    const page = await (await fetch(`${server.webUrl}machines/${machineId}`)).text();
    expect(page).toContain("ACME");

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
    const runs = await Promise.all(cases.map(([args]) => bmctl(...args)));
    for (const [i, [args, message]] of cases.entries()) {
      const r = runs[i]!;
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
    }
  });

  it("says so in one line when the server cannot be reached", async () => {
    const r = await runCommand("bmctl", ["--server", "127.0.0.1:1", "--certs-dir", certs, "machine", "create"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^bmctl: cannot reach the server at 127\.0\.0\.1:1/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("refuses to start on a port in use, with one line", async () => {
    const port = server.internalAddress.split(":").pop()!;
    const r = await runCommand("bmaas-server", ["--dev-certs", certs, "--database-url", "memory://", "--public-listen", "127.0.0.1:0", "--internal-listen", `127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^bmaas-server: cannot listen for operators on 127\.0\.0\.1:\d+: address already in use\n$/);
  });

  it("refuses bad flags and an unreachable database, with one line each", async () => {
    const [badUrl, noTls, badFlag] = await Promise.all([
      runCommand("bmaas-server", ["--dev-certs", certs, "--database-url", "postgres://nobody@127.0.0.1:1/x"]),
      runCommand("bmaas-server", ["--database-url", "memory://"]),
      runCommand("bmaas-server", ["--max-request-bytes", "lots"]),
    ]);
    expect(badUrl.code).not.toBe(0);
    expect(badUrl.stderr).toMatch(/^bmaas-server: cannot open database: .*ECONNREFUSED.*\n$/);
    expect(noTls.code).not.toBe(0);
    expect(noTls.stderr).toMatch(/^bmaas-server: TLS is required/);
    expect(badFlag.code).not.toBe(0);
    expect(badFlag.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("reuses its dev certificates and stops cleanly on SIGTERM", async () => {
    const ca = readFileSync(join(certs, "ca.pem"), "utf8");
    server.proc.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    // Same directory again: same CA, and the data written before is still there.
    const again = await startServerProcess(["--dev-certs", certs, "--database-url", join(dir, "db"), "--public-listen", "127.0.0.1:0", "--internal-listen", "127.0.0.1:0", "--metrics-listen", ""]);
    try {
      expect(readFileSync(join(certs, "ca.pem"), "utf8")).toBe(ca);
      const r = await runCommand("bmctl", ["--server", again.internalAddress, "--certs-dir", certs, "machine", "create", "--provider", "equinix", "--provider-id", "da-1"]);
      expect(r.stderr).toMatch(/already has a machine/);
    } finally {
      again.proc.kill("SIGTERM");
      expect(await again.exited).toBe(0);
    }
  });
});

/** Parses argv and env as a command with these flags would; the options, or the one-line error. */
function parseFlags<T extends OptionValues>(register: (cmd: Command) => Command, argv: string[], env: Record<string, string>): { opts?: T; error?: string } {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  let error = "";
  const cmd = register(new Command("t").exitOverride().configureOutput({ writeErr: (s) => (error += s), writeOut: () => {} }));
  try {
    cmd.parse(argv, { from: "user" });
    return { opts: cmd.opts<T>() };
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    return { error: error.trim() };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe("flags shared through lib/flags", () => {
  it("BMAAS_SKIP_MIGRATIONS=false means migrate; true/1/yes skip; anything else is refused", () => {
    const migrate = (env: Record<string, string>, argv: string[] = []) => {
      const r = parseFlags<BmdbFlags>(BmdbConfig.registerFlags, ["--database-url", "memory://", ...argv], env);
      return r.error ?? BmdbConfig.fromFlags(r.opts!).options.migrate;
    };
    expect(migrate({ BMAAS_SKIP_MIGRATIONS: "false" })).toBe(true);
    expect(migrate({ BMAAS_SKIP_MIGRATIONS: "0" })).toBe(true);
    expect(migrate({ BMAAS_SKIP_MIGRATIONS: "No" })).toBe(true);
    expect(migrate({ BMAAS_SKIP_MIGRATIONS: "true" })).toBe(false);
    expect(migrate({ BMAAS_SKIP_MIGRATIONS: "1" })).toBe(false);
    expect(migrate({}, ["--skip-migrations"])).toBe(false);
    expect(migrate({ BMAAS_SKIP_MIGRATIONS: "yes please" })).toMatch(/^error: option '--skip-migrations \[boolean\]' value 'yes please' from env 'BMAAS_SKIP_MIGRATIONS' is invalid\. must be true or false/);
    expect(migrate({ BMAAS_DB_POOL_SIZE: "0" })).toMatch(/BMAAS_DB_POOL_SIZE' is invalid\. must be an integer of at least 1$/);
  });

  /** What bmaas-server's flags (with a dev PKI in a temporary directory) resolve to, picked by `pick`; or the flag error. */
  const resolveServer = async <T>(pick: (c: Awaited<ReturnType<typeof ServerConfig.resolve>>) => T, argv: string[], env: Record<string, string> = {}) => {
    const dir = mkdtempSync(join(tmpdir(), "bmaas-flags-"));
    try {
      const r = parseFlags<ServerFlags>(ServerConfig.registerFlags, ["--dev-certs", dir, ...argv], env);
      return r.error ?? pick(await ServerConfig.resolve(r.opts!, { ...env }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("--heartbeat-batches sets the group-commit batches in the database at once: 2 by default, at least 1", async () => {
    const concurrency = (argv: string[], env?: Record<string, string>) => resolveServer((c) => c.heartbeatQueue?.concurrency, argv, env);
    expect(await concurrency([])).toBe(2);
    expect(await concurrency(["--heartbeat-batches", "1"])).toBe(1);
    expect(await concurrency(["--heartbeat-batches", "3"])).toBe(3);
    expect(await concurrency([], { BMAAS_HEARTBEAT_BATCHES: "2" })).toBe(2);
    expect(await concurrency(["--heartbeat-batches", "0"])).toMatch(/^error: option '--heartbeat-batches <n>' argument '0' is invalid/);
  });

  it("--tls-ed25519-decoder: legacy by default, provider by flag or env, nothing else", async () => {
    const decoder = (argv: string[], env?: Record<string, string>) => resolveServer((c) => c.agentLimits?.ed25519Decoder, argv, env);
    expect(await decoder([])).toBe("legacy");
    expect(await decoder(["--tls-ed25519-decoder", "provider"])).toBe("provider");
    expect(await decoder([], { BMAAS_TLS_ED25519_DECODER: "provider" })).toBe("provider");
    expect(await decoder(["--tls-ed25519-decoder", "fast"])).toMatch(/^error: option '--tls-ed25519-decoder <how>' argument 'fast' is invalid/);
  });

  it("socket activation: the agent listener takes the socket passed for it, and malformed variables are an error", async () => {
    const socket = (env: Record<string, string>) => resolveServer((c) => c.agentSocketFd, [], env).catch((e: Error) => e.message);
    const pid = String(process.pid);
    expect(await socket({})).toBeUndefined();
    expect(await socket({ LISTEN_PID: pid, LISTEN_FDS: "1" })).toBe(3);
    expect(await socket({ LISTEN_PID: pid, LISTEN_FDS: "2", LISTEN_FDNAMES: "operator:agent" })).toBe(4);
    // Meant for another process: ignored.
    expect(await socket({ LISTEN_PID: "1", LISTEN_FDS: "1" })).toBeUndefined();
    expect(await socket({ LISTEN_PID: pid, LISTEN_FDS: "2", LISTEN_FDNAMES: "web:metrics" })).toBe(
      'socket activation: none of the sockets passed (web, metrics) is named "agent"',
    );
    expect(await socket({ LISTEN_PID: pid, LISTEN_FDS: "x" })).toBe("socket activation: LISTEN_FDS=x is not a count of sockets");
  });

  it("BMAAS_AGENT_INSECURE=false is false, and seconds flags that become timers stop at 2^31-1 ms", () => {
    const run = (argv: string[], env: Record<string, string> = {}) => parseFlags<AgentRunFlags>(AgentConfig.registerRunFlags, argv, env);
    expect(run([], { BMAAS_AGENT_INSECURE: "false" }).opts!.insecure).toBe(false);
    expect(run([], { BMAAS_AGENT_INSECURE: "OFF" }).opts!.insecure).toBe(false);
    expect(run([], { BMAAS_AGENT_INSECURE: "true" }).opts!.insecure).toBe(true);
    expect(run(["--insecure"]).opts!.insecure).toBe(true);
    expect(run([], { BMAAS_AGENT_INSECURE: "" }).error).toMatch(/from env 'BMAAS_AGENT_INSECURE' is invalid\. must be true or false/);
    const flags = { server: "h:1", machineId: "3f1e3a3c-8a9a-4c35-9f39-6f0b9b0f0c11", key: "k" };
    expect(() => AgentConfig.check({ ...run([], { BMAAS_AGENT_INSECURE: "false" }).opts!, ...flags })).toThrow(/give --ca FILE/);
    expect(run(["--interval", "2147483"]).opts!.interval).toBe(2147483);
    expect(run(["--interval", "2147484"]).error).toBe("error: option '--interval <seconds>' argument '2147484' is invalid. must be a number from 0.1 to 2147483");
    expect(run([], { BMAAS_AGENT_INSTALLER_TIMEOUT: "1e10" }).error).toMatch(/must be a number from 1 to 2147483$/);
  });
});

describe("bmctl's development certificates", () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("are looked for in ./.bmaas-dev/certs and bmctl's checkout only, never in parent directories", async () => {
    dir = mkdtempSync(join(tmpdir(), "bmctl-devcerts-"));
    const planted = writeCertsDir(join(dir, ".bmaas-dev", "certs"), await testPki());
    const child = join(dir, "project", "sub");
    mkdirSync(child, { recursive: true });
    expect(findDevCerts(dir)).toBe(planted);
    const found = findDevCerts(child);
    expect(found).not.toBe(planted);
    // The only other place is the checkout's own (absent unless npm start ran here).
    if (found) expect(found).toBe(join(ROOT, ".bmaas-dev", "certs"));
    const help = await runCommand("bmctl", ["--help"]);
    expect(help.stdout.replace(/\s+/g, " ")).toContain("looks for those certificates only in ./.bmaas-dev/certs (the working directory) and in .bmaas-dev/certs of its own checkout (next to its package.json), never in parent directories");
  });
});

describe("bmctl machine watch when the server ends the stream", () => {
  // A stand-in operator listener whose WatchMachines fails as a broken server
  // might: with database errors, stack traces and escape sequences in the text.
  let server: grpc.Server;
  let address: string;
  let dir: string;
  const INTERNALS = 'relation "machine_events" does not exist\n    at Parser.parseErrorMessage (/srv/node_modules/pg-protocol/dist/parser.js:283:98)';
  const scenarios: Record<string, { code: grpc.status; details: string; eventFirst: boolean }> = {
    "00000000-0000-4000-8000-000000000001": { code: grpc.status.INTERNAL, details: `error: ${INTERNALS}`, eventFirst: false },
    "00000000-0000-4000-8000-000000000002": { code: grpc.status.UNAVAILABLE, details: `cannot listen for machine events: ${INTERNALS}`, eventFirst: true },
    "00000000-0000-4000-8000-000000000003": { code: grpc.status.RESOURCE_EXHAUSTED, details: "watcher fell more than 1000 events behind and was dropped; reconnect", eventFirst: true },
    "00000000-0000-4000-8000-000000000004": { code: grpc.status.NOT_FOUND, details: "machine \u001b[2J\u001b]0;pwned\u0007gone\nsecond line", eventFirst: false },
  };

  beforeAll(async () => {
    const pki = await testPki();
    dir = mkdtempSync(join(tmpdir(), "bmctl-watch-"));
    writeCertsDir(join(dir, "certs"), pki);
    server = new grpc.Server();
    server.addService(serviceDefinition(OperatorService), {
      watchMachines: (call: grpc.ServerWritableStream<WatchMachinesRequest, unknown>) => {
        const s = scenarios[call.request.machineId]!;
        if (s.eventFirst) {
          call.write(create(WatchMachinesResponseSchema, { item: { case: "event", value: { machineId: call.request.machineId, kind: "heartbeat_resumed", detailsJson: "{}" } } }));
        }
        setTimeout(() => call.emit("error", Object.assign(new Error(s.details), { code: s.code, details: s.details })), 50);
      },
    });
    const creds = grpc.ServerCredentials.createSsl(Buffer.from(pki.ca.cert), [{ private_key: Buffer.from(pki.server.key), cert_chain: Buffer.from(pki.server.cert) }], true);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", creds, (e, p) => (e ? reject(e) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  afterAll(() => {
    server?.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it("prints one line that says what happened, without the server's internals or control characters", async () => {
    const watch = (id: string) => runCommand("bmctl", ["--server", address, "--certs-dir", join(dir, "certs"), "machine", "watch", id]);
    const [internal, unavailable, behind, notFound] = await Promise.all(Object.keys(scenarios).map(watch));
    for (const r of [internal, unavailable, behind, notFound]) {
      expect(r!.code).toBe(1);
      expect(r!.stderr).not.toMatch(/relation|Parser|pg-protocol|\u001b|\u0007|second line/);
      expect(r!.stderr.replace(/^watching .*\n/, "").split("\n")).toHaveLength(2); // one line and its newline
    }
    expect(internal!.stderr).toMatch(new RegExp(`^bmctl: the server at ${address} ended the watch with an internal error \\(INTERNAL\\); its log has the details\n$`));
    expect(unavailable!.stdout).toMatch(/heartbeat_resumed/);
    expect(unavailable!.stderr).toMatch(/bmctl: the server at \S+ ended the watch: machine events are unavailable right now \(UNAVAILABLE\); watch again later\n$/);
    expect(behind!.stderr).toMatch(/bmctl: the server at \S+ ended the watch: it fell too far behind the events; watch again/);
    expect(notFound!.stderr).toBe("bmctl: machine [2J]0;pwnedgone\n");
  });
});
