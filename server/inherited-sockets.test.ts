import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { connect as netConnect } from "node:net";
import { describe, expect, it } from "vitest";
import { testBackends } from "../test/helpers/databases.js";
import { acceptQueues, deepestAcceptQueue } from "../test/helpers/accept-queues.js";
import { commandLine, ROOT } from "../test/helpers/process.js";
import { codeOf, newAgent, startServerOn, startTestServer } from "../test/helpers/server.js";
import { agentSocket, inheritedSockets } from "./inherited-sockets.js";
import { copySocket, openSharedPort } from "./reuseport.js";

/** A bound loopback socket, as systemd holds one: each server gets its own copy and closes it when it stops. */
function heldSocket(): { fd: number; port: number } {
  const { fds, port, error } = openSharedPort({ host: "127.0.0.1", port: 0 }, 1, "a held socket");
  expect(error).toBeUndefined();
  return { fd: fds![0]!, port: port! };
}

describe("inherited sockets (systemd socket activation)", () => {
  it("reads LISTEN_FDS from fd 3 on, by LISTEN_FDNAMES, and removes the variables", () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: "42", LISTEN_FDS: "2", LISTEN_FDNAMES: "metrics:agent", OTHER: "kept" };
    const { sockets, problem } = inheritedSockets(env, 42);
    expect(problem).toBeUndefined();
    expect([...sockets]).toEqual([
      ["metrics", 3],
      ["agent", 4],
    ]);
    expect(agentSocket(sockets)).toBe(4);
    expect(env).toEqual({ OTHER: "kept" });
  });

  it("takes one socket for the agents whatever its name, and none meant for another process", () => {
    expect(agentSocket(inheritedSockets({ LISTEN_PID: "7", LISTEN_FDS: "1", LISTEN_FDNAMES: "bmaas-agent.socket" }, 7).sockets)).toBe(3);
    expect(agentSocket(inheritedSockets({ LISTEN_PID: "7", LISTEN_FDS: "1" }, 7).sockets)).toBe(3);
    // Without LISTEN_PID, or another process's: not ours.
    expect(inheritedSockets({ LISTEN_FDS: "1" }, 7).sockets.size).toBe(0);
    expect(inheritedSockets({ LISTEN_PID: "8", LISTEN_FDS: "1" }, 7).sockets.size).toBe(0);
    expect(inheritedSockets({}, 7).sockets.size).toBe(0);
    // Two sockets, neither named "agent": none is the agents'.
    expect(agentSocket(inheritedSockets({ LISTEN_PID: "7", LISTEN_FDS: "2", LISTEN_FDNAMES: "a:b" }, 7).sockets)).toBeUndefined();
  });

  it("says what is wrong with malformed variables", () => {
    const ours = { LISTEN_PID: "7" };
    expect(inheritedSockets({ ...ours, LISTEN_FDS: "two" }, 7).problem).toMatch(/LISTEN_FDS=two/);
    expect(inheritedSockets({ ...ours, LISTEN_FDS: "2", LISTEN_FDNAMES: "agent" }, 7).problem).toMatch(/names 1 sockets, LISTEN_FDS says 2/);
    expect(inheritedSockets({ ...ours, LISTEN_FDS: "2", LISTEN_FDNAMES: "agent:agent" }, 7).problem).toMatch(/two sockets "agent"/);
  });

  it("serves agents on a held socket, and hands connections made while no server runs to the next one (on two threads)", async () => {
    expect(() => copySocket(-1)).toThrow(/EINVAL/);
    const notSocket = openSync("/dev/null", "r");
    expect(() => copySocket(notSocket)).toThrow(/ENOTSOCK/);
    closeSync(notSocket);
    const held = heldSocket();
    const address = `127.0.0.1:${held.port}`;
    const t = await startTestServer(testBackends()[0]!, { agentSocketFd: copySocket(held.fd) });
    let next: Awaited<ReturnType<typeof startServerOn>> | undefined;
    let firstStopped = false;
    try {
      expect(t.server.publicAddress).toBe(address);
      expect(acceptQueues(held.port)).toEqual([deepestAcceptQueue()]);
      const [early, late] = await Promise.all([newAgent(address, t.pki), newAgent(address, t.pki)]);
      const machines = await Promise.all(
        [early, late].map(async (a) => {
          const { machineId } = await t.operator.createMachine({});
          await t.operator.registerAgent({ machineId, publicKey: a.publicKey });
          return machineId;
        }),
      );
      expect(await codeOf(early.client.heartbeat({ machineId: machines[0]! }))).toBe(grpc.status.OK);

      t.operator.close();
      await t.server.stop();
      firstStopped = true;
      // No server now: a connection is queued by the kernel, not refused.
      const connecting = await new Promise<string>((resolve) => {
        const s = netConnect({ host: "127.0.0.1", port: held.port });
        s.once("connect", () => (s.destroy(), resolve("connected"))).once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      });
      expect(connecting).toBe("connected");
      // An agent that calls now waits for its connection and is served by the next server.
      const waiting = codeOf(late.client.heartbeat({ machineId: machines[1]! }, { deadline: Date.now() + 20_000 }));
      await new Promise((r) => setTimeout(r, 300));
      // The next server on two threads: both accept from the one inherited socket.
      next = await startServerOn(t.bmdb, t.pki, { agentSocketFd: copySocket(held.fd), agentThreads: 2 });
      expect(next.agentConnectionsByThread).toHaveLength(2);
      expect(await waiting).toBe(grpc.status.OK);
      expect(next.publicAddress).toBe(address);
      early.client.close();
      late.client.close();
    } finally {
      await next?.stop();
      if (firstStopped) await t.bmdb.close().then(() => t.db.drop());
      else await t.stop();
      closeSync(held.fd);
    }
  });

  it("bmaas-server started as systemd would (the socket as fd 3, LISTEN_PID its own) listens on that socket", async () => {
    const held = heldSocket();
    const dir = mkdtempSync(join(tmpdir(), "bmaas-activation-"));
    const [node, args] = commandLine("bmaas-server", ["--dev-certs", dir, "--database-url", "memory://", "--public-listen", "127.0.0.1:0", "--internal-listen", "127.0.0.1:0"]);
    const proc = spawn("bash", ["-c", 'export LISTEN_PID=$$; exec "$@"', "bash", node, ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe", held.fd],
      env: { ...process.env, LISTEN_FDS: "1", LISTEN_FDNAMES: "agent" },
    });
    try {
      const open = await new Promise<{ public?: string; inheritedFd?: number }>((resolve, reject) => {
        proc.once("exit", (code) => reject(new Error(`bmaas-server exited with ${code}`)));
        createInterface({ input: proc.stdout! }).on("line", (line) => {
          const log = line.startsWith("{") ? (JSON.parse(line) as { msg?: string; public?: string; inheritedFd?: number }) : {};
          if (log.msg === "agent listener open") resolve(log);
        });
      });
      expect(open).toMatchObject({ public: `127.0.0.1:${held.port}`, inheritedFd: 3 });
    } finally {
      proc.kill("SIGKILL");
      closeSync(held.fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
