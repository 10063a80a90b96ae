import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  AgentHardwareReportSchema,
  HeartbeatResponseSchema,
  type HeartbeatRequestSchema,
  type HeartbeatResponse,
} from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { MAX_TIMER_MS } from "../lib/flags.js";
import { Agent, MAX_SUGGESTED_INTERVAL_MS, NOT_ADMITTED, type AgentDeps, type State, type Transition } from "./agent.js";
import { AGENT_BACKOFF, Backoff, MAX_PUSHBACK_MS } from "./backoff.js";
import { createKeyFile, loadKeyFile, publicKeyHex } from "./identity.js";
import { InstallStateFile } from "./install-state.js";
import { runCommand } from "./commands.js";

// The state machine is driven step by step with a scripted transport: these
// are unit tests of its decisions. The real transport is exercised end to end
// in test/agent-e2e.test.ts against a real server.

type Request = MessageInitShape<typeof HeartbeatRequestSchema>;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "agent-test-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function harness(overrides: Partial<AgentDeps> = {}, script: (Error | MessageInitShape<typeof HeartbeatResponseSchema>)[] = []) {
  const sent: Request[] = [];
  const transitions: Transition[] = [];
  const slept: number[] = [];
  let hw = create(AgentHardwareReportSchema, { report: { manufacturer: "ACME" } });
  const installs: bigint[] = [];
  const deps: AgentDeps = {
    machineId: "9b4b8487-6a66-4ca3-b732-0f789f43f1a8",
    transport: async (req) => {
      sent.push(req);
      const next = script.shift() ?? {};
      if (next instanceof Error) throw next;
      return create(HeartbeatResponseSchema, next) as HeartbeatResponse;
    },
    collectHardwareReport: () => hw,
    install: async (req) => {
      installs.push(req.generation);
      return { ok: true };
    },
    installState: new InstallStateFile(dir),
    intervalMs: 30_000,
    jitter: 0,
    sleep: async (ms) => void slept.push(ms),
    random: () => 0.5,
    logger: pino({ level: "silent" }),
    onTransition: (t) => transitions.push(t),
    ...overrides,
  };
  const agent = new Agent(deps);
  return {
    agent,
    sent,
    transitions,
    slept,
    installs,
    setHardware: (manufacturer: string) => (hw = create(AgentHardwareReportSchema, { report: { manufacturer } })),
    async steps(n: number): Promise<State[]> {
      const states: State[] = [];
      for (let i = 0; i < n; i++) states.push(await agent.step());
      return states;
    },
  };
}

const unavailable = () => Object.assign(new Error("connection refused"), { code: 14, details: "connection refused" });

/** A grpc-js ServiceError as the transport rejects with: code, details and the trailers in metadata. */
function serviceError(code: grpc.status, trailers: Record<string, string> = {}): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(trailers)) metadata.set(k, v);
  return Object.assign(new Error(`${code} ${grpc.status[code]}: busy`), { code, details: "busy", metadata });
}

/** A logger whose JSON lines are kept. */
type LogLine = { level: number; msg: string; [k: string]: unknown };
function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { lines, logger: pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) }) };
}
const request = (generation: bigint) => ({ installationRequest: { generation, type: { case: "metropolis" as const, value: { rootDevice: "/dev/sda" } } } });

describe("Agent state machine", () => {
  it("heartbeats, idles for the interval, and sends the hardware report until accepted, then on change", async () => {
    const h = harness({}, [unavailable(), {}, {}, {}]);
    expect(await h.steps(2)).toEqual(["Heartbeat", "Idle"]); // first heartbeat fails
    expect(h.sent[0]!.hardwareReport).toBeDefined();
    expect(await h.steps(2)).toEqual(["Heartbeat", "Idle"]); // retried: report still owed
    expect(h.sent[1]!.hardwareReport).toBeDefined();
    expect(h.agent.nextDelayMs).toBe(30_000);
    await h.steps(2);
    expect(h.sent[2]!.hardwareReport).toBeUndefined(); // accepted, unchanged
    h.setHardware("ACME rev 2");
    await h.steps(2);
    expect(h.sent[3]!.hardwareReport?.report?.manufacturer).toBe("ACME rev 2");
    expect(h.transitions.map((t) => `${t.from}>${t.to}`).slice(0, 3)).toEqual(["Init>Heartbeat", "Heartbeat>Idle", "Idle>Heartbeat"]);
    expect(h.transitions[1]!.reason).toMatch(/heartbeat failed: code 14: connection refused; retrying in 0\.5s/);
  });

  it("backs off 0.5 s ×1.5 to 60 s on errors, and a success resets it", async () => {
    const h = harness({}, [...Array.from({ length: 14 }, unavailable), {}, unavailable()]);
    await h.agent.step(); // Init
    const delays: number[] = [];
    for (let i = 0; i < 14; i++) {
      await h.agent.step();
      delays.push(h.agent.nextDelayMs);
      await h.agent.step();
    }
    expect(delays.slice(0, 4)).toEqual([500, 750, 1125, 1687.5]);
    expect(Math.max(...delays)).toBe(60_000);
    expect(delays.at(-1)).toBe(60_000);
    await h.steps(2); // success
    expect(h.agent.nextDelayMs).toBe(30_000);
    await h.steps(2); // failure after success starts over
    expect(h.agent.nextDelayMs).toBe(500);
  });

  it("jitters backoff within ±20% and the interval within ±jitter", () => {
    const lo = new Backoff(AGENT_BACKOFF, () => 0).next();
    const hi = new Backoff(AGENT_BACKOFF, () => 0.999999).next();
    expect(lo).toBeCloseTo(400, 3);
    expect(hi).toBeCloseTo(600, 2);
  });

  it("installs a new generation once, reports it, reboots, and never reruns it", async () => {
    const reboots: number[] = [];
    const h = harness({ reboot: async () => (reboots.push(1), { ok: true }) }, [request(123n), {}, request(123n), {}]);
    expect(await h.steps(5)).toEqual(["Heartbeat", "Install", "Report", "Reboot", "Idle"]);
    expect(h.installs).toEqual([123n]);
    expect(h.sent[1]!.installationReport).toMatchObject({ generation: 123n, result: { case: "success" } });
    expect(reboots).toHaveLength(1);
    // The server (wrongly) asks again: handled generations are not rerun.
    expect(await h.steps(2)).toEqual(["Heartbeat", "Idle"]);
    expect(h.installs).toEqual([123n]);
    expect(new InstallStateFile(dir).read()).toEqual({ generation: 123n, status: "succeeded", reported: true });
  });

  it("reports an error when no installer is configured", async () => {
    const h = harness({ install: undefined }, [request(7n), {}]);
    expect(await h.steps(4)).toEqual(["Heartbeat", "Install", "Report", "Idle"]);
    expect(h.sent[1]!.installationReport).toMatchObject({
      generation: 7n,
      result: { case: "error", value: { error: expect.stringContaining("no installer configured") } },
    });
  });

  it("keeps owing a report that failed to send and carries it on the next heartbeat", async () => {
    const h = harness({}, [request(9n), unavailable(), {}]);
    expect(await h.steps(6)).toEqual(["Heartbeat", "Install", "Report", "Idle", "Heartbeat", "Idle"]);
    expect(h.sent[2]!.installationReport?.generation).toBe(9n);
    expect(new InstallStateFile(dir).read()?.reported).toBe(true);
  });

  it("after dying mid-install, reports the installation as interrupted instead of rerunning it", async () => {
    new InstallStateFile(dir).write({ generation: 4n, status: "running", reported: false });
    const h = harness({}, [request(4n)]);
    expect(await h.steps(3)).toEqual(["Heartbeat", "Idle", "Heartbeat"]);
    expect(h.installs).toEqual([]);
    expect(h.sent[0]!.installationReport).toMatchObject({ generation: 4n, result: { case: "error", value: { error: expect.stringContaining("interrupted") } } });
  });

  it("honours the interval the server suggests", async () => {
    const h = harness({}, [{ suggestedInterval: durationFromMs(5_000) }]);
    await h.steps(2);
    expect(h.agent.nextDelayMs).toBe(5_000);
  });

  it("clamps a suggested interval to 1 s .. 24 h, and never sleeps longer than Node's timers allow", async () => {
    const h = harness({}, [{ suggestedInterval: durationFromMs(1) }, { suggestedInterval: { seconds: 10n ** 12n } }, { suggestedInterval: durationFromMs(-5_000) }]);
    await h.steps(2);
    expect(h.agent.nextDelayMs).toBe(1_000);
    await h.steps(2);
    expect(h.agent.nextDelayMs).toBe(MAX_SUGGESTED_INTERVAL_MS);
    await h.steps(2); // a negative suggestion is none: the last interval stays
    expect(h.agent.nextDelayMs).toBe(MAX_SUGGESTED_INTERVAL_MS);
    // An own interval (from elsewhere than the capped flags) whose jitter would overflow the timer.
    const big = harness({ intervalMs: MAX_TIMER_MS, jitter: 0.5, random: () => 0.999 }, [{}]);
    await big.steps(2);
    expect(big.agent.nextDelayMs).toBe(MAX_TIMER_MS);
  });

  it("waits the server's grpc-retry-pushback-ms (+ up to 10%) instead of its backoff on UNAVAILABLE and RESOURCE_EXHAUSTED", async () => {
    const log = recordingLogger();
    const h = harness({ logger: log.logger, random: () => 0.5 }, [
      serviceError(grpc.status.UNAVAILABLE, { "grpc-retry-pushback-ms": "2000" }),
      serviceError(grpc.status.RESOURCE_EXHAUSTED, { "grpc-retry-pushback-ms": "30000" }),
      serviceError(grpc.status.UNAVAILABLE, { "grpc-retry-pushback-ms": String(3_600_000) }),
      serviceError(grpc.status.UNAVAILABLE),
      serviceError(grpc.status.UNAVAILABLE, { "grpc-retry-pushback-ms": "-1" }),
      serviceError(grpc.status.UNAVAILABLE, { "grpc-retry-pushback-ms": "soon" }),
      serviceError(grpc.status.INTERNAL, { "grpc-retry-pushback-ms": "2000" }),
    ]);
    await h.agent.step(); // Init
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      await h.steps(2);
      delays.push(h.agent.nextDelayMs);
    }
    // 2 s + 5% (random 0.5 of 10%); 30 s + 5%; an hour is capped at 10 minutes;
    // then the agent's own backoff, which the pushbacks did not advance: 0.5, 0.75, 1.125, 1.6875 s.
    expect(delays).toEqual([2_100, 31_500, MAX_PUSHBACK_MS, 500, 750, 1_125, 1_687.5]);
    expect(h.transitions[1]!.reason).toMatch(/server pushback 2000ms, retrying in 2\.1s/);
    expect(log.lines.filter((l) => /grpc-retry-pushback-ms/.test(l.msg)).map((l) => l["pushbackMs"])).toEqual([2000, 30000, 3_600_000]);
    // The jitter stays within 10%.
    const hi = harness({ random: () => 0.999999 }, [serviceError(grpc.status.UNAVAILABLE, { "grpc-retry-pushback-ms": "1000" })]);
    await hi.steps(2);
    expect(hi.agent.nextDelayMs).toBeGreaterThan(1_099);
    expect(hi.agent.nextDelayMs).toBeLessThanOrEqual(1_100);
  });

  it("says it is not admitted yet on UNAUTHENTICATED, once, and keeps backing off", async () => {
    const log = recordingLogger();
    const h = harness({ logger: log.logger }, [serviceError(grpc.status.UNAUTHENTICATED), serviceError(grpc.status.UNAUTHENTICATED), {}, serviceError(grpc.status.UNAUTHENTICATED)]);
    await h.steps(3);
    expect(h.agent.nextDelayMs).toBe(500);
    expect(h.transitions[1]!.reason).toContain(NOT_ADMITTED);
    await h.steps(2);
    expect(h.agent.nextDelayMs).toBe(750);
    expect(h.transitions[3]!.reason).toMatch(/^not admitted yet: pending operator acceptance or a wrong key \(heartbeat failed: code 16: busy\); retrying in 0\.8s$/);
    const said = () => log.lines.filter((l) => l.level === 40 && l.msg.startsWith(NOT_ADMITTED)).length;
    expect(said()).toBe(1);
    await h.steps(4); // admitted, then refused again (a revoked key): said again
    expect(said()).toBe(2);
  });

  it("sends an installer's error without control characters or invalid text, at most 4096 characters", async () => {
    const error = "install-os: exit status 1: disk \u0000/dev/sda\u0007 \ud800 gone\t" + "x".repeat(10_000);
    const h = harness({ install: async () => ({ ok: false, error }) }, [request(5n), {}]);
    expect(await h.steps(4)).toEqual(["Heartbeat", "Install", "Report", "Idle"]);
    const sent = h.sent[1]!.installationReport!.result as { case: "error"; value: { error: string } };
    expect(sent.value.error.startsWith("install-os: exit status 1: disk /dev/sda \ufffd gone x")).toBe(true);
    expect([...sent.value.error]).toHaveLength(4096);
    expect(sent.value.error).not.toMatch(/[\x00-\x1f]/);
  });

  it("once() runs one cycle and returns the heartbeat's error", async () => {
    const h = harness({}, [unavailable()]);
    expect(await h.agent.once()).toMatchObject({ code: 14 });
    const ok = harness({}, [request(3n), {}]);
    expect(await ok.agent.once()).toBeUndefined();
    expect(ok.installs).toEqual([3n]);
  });
});

describe("install state file", () => {
  it("is written 0600 in a 0700 directory through a fresh temporary file, never through a planted symlink", () => {
    const stateDir = join(dir, "state");
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    const file = new InstallStateFile(stateDir);
    file.write({ generation: 1n, status: "running", reported: false });
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(file.path).mode & 0o777).toBe(0o600);
    // The old code wrote install-state.json.tmp and followed a link there.
    symlinkSync(victim, `${file.path}.tmp`);
    file.write({ generation: 1n, status: "succeeded", reported: false });
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(file.read()).toEqual({ generation: 1n, status: "succeeded", reported: false });
    // No temporary files are left behind.
    expect(readdirSync(stateDir).sort()).toEqual(["install-state.json", "install-state.json.tmp"]);
  });

  it("refuses to read the state through a symlink", () => {
    const stateDir = join(dir, "state2");
    const file = new InstallStateFile(stateDir);
    file.write({ generation: 2n, status: "failed", error: "x", reported: true });
    const elsewhere = join(dir, "elsewhere.json");
    writeFileSync(elsewhere, readFileSync(file.path));
    rmSync(file.path);
    symlinkSync(elsewhere, file.path);
    expect(() => file.read()).toThrow(/is a symbolic link/);
  });
});

describe("agent keys", () => {
  it("keygen writes a 0600 key, refuses to overwrite it, and pubkey reads it back", () => {
    const path = join(dir, "key.pem");
    const key = createKeyFile(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(publicKeyHex(loadKeyFile(path))).toBe(publicKeyHex(key));
    expect(publicKeyHex(key)).toMatch(/^[0-9a-f]{64}$/);
    const before = readFileSync(path, "utf8");
    expect(() => createKeyFile(path)).toThrow(/refusing to overwrite/);
    expect(readFileSync(path, "utf8")).toBe(before);
  });
});

describe("runCommand", () => {
  it("passes stdin, reports exit status with stderr, and enforces the timeout", async () => {
    const out = join(dir, "stdin");
    expect(await runCommand(`cat > ${out}`, '{"generation":"1"}', 5_000)).toEqual({ ok: true });
    expect(readFileSync(out, "utf8")).toBe('{"generation":"1"}');
    expect(await runCommand("echo broken disk >&2; exit 3", "", 5_000)).toEqual({ ok: false, error: "echo broken disk >&2; exit 3: exit status 3: broken disk" });
    const started = Date.now();
    const slow = await runCommand("sleep 30; echo never", "", 200);
    expect(slow).toMatchObject({ ok: false, error: expect.stringContaining("timed out") });
    // The whole process group is killed, not just the shell.
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe("Agent.run", () => {
  it("stops when aborted during Idle without starting another heartbeat", async () => {
    const abort = new AbortController();
    let beats = 0;
    const h = harness({
      transport: async () => {
        beats++;
        return create(HeartbeatResponseSchema, {}) as HeartbeatResponse;
      },
      sleep: async () => abort.abort(),
    });
    await h.agent.run(abort.signal);
    expect(beats).toBe(1);
    expect(h.agent.state).toBe("Idle");
    expect(h.transitions.map((t) => t.to)).toEqual(["Heartbeat", "Idle"]);
  });
});
