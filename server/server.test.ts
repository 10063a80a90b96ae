import * as grpc from "@grpc/grpc-js";
import { connect, createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBmdb, type Bmdb } from "../bmdb/index.js";
import { testBackends, type TestDatabase } from "../test/helpers/databases.js";
import { startServerOn, testPki } from "../test/helpers/server.js";

// A start() that fails half-way must leave nothing behind: no listener still
// accepting, no grpc-js server still registered, and the caller's database
// untouched (it is the caller's to close).

/** A loopback server holding a port, so that a listener there fails with "address already in use". */
function occupy(): Promise<Server> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen({ host: "127.0.0.1", port: 0 }, () => resolve(s));
  });
}

const portOf = (s: Server) => (s.address() as { port: number }).port;

/** A port that was free a moment ago (bound on 0, then released). */
async function freePort(): Promise<number> {
  const s = await occupy();
  const port = portOf(s);
  await new Promise((r) => s.close(r));
  return port;
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** How many grpc-js servers exist in this process (channelz registers each until it is shut down). */
function grpcServers(): Promise<number> {
  type GetServers = ReturnType<typeof grpc.getChannelzHandlers>["GetServers"];
  const call = { request: { start_server_id: "0", max_results: "1000" } } as unknown as Parameters<GetServers>[0];
  return new Promise((resolve, reject) =>
    grpc.getChannelzHandlers().GetServers(call, (err, res) => (err ? reject(err) : resolve(res?.server?.length ?? 0))),
  );
}

/**
 * TCP server handles this process holds. A closed server's handle is released
 * in the close phase of the event loop, after its close callback: a timer
 * fires only after that phase has run.
 */
async function tcpServers(): Promise<number> {
  await new Promise((r) => setTimeout(r, 10));
  return process.getActiveResourcesInfo().filter((r) => r === "TCPServerWrap").length;
}

describe("BmaasServer.start failing half-way", () => {
  let db: TestDatabase;
  let bmdb: Bmdb;
  let blocker: Server;

  beforeAll(async () => {
    db = await testBackends()[0]!.create();
    bmdb = await openBmdb(db.url);
    blocker = await occupy();
  });
  afterAll(async () => {
    blocker?.close();
    await bmdb?.close();
    await db?.drop();
  });

  it("closes the agent listener when the operator port is taken", async () => {
    const pki = await testPki();
    const agentPort = await freePort();
    const [servers, tcp] = [await grpcServers(), await tcpServers()];
    await expect(
      startServerOn(bmdb, pki, { publicListenAddress: `127.0.0.1:${agentPort}`, internalListenAddress: `127.0.0.1:${portOf(blocker)}` }),
    ).rejects.toThrow(`cannot listen for operators on 127.0.0.1:${portOf(blocker)}: address already in use`);
    expect(await accepting(agentPort)).toBe(false);
    expect(await tcpServers()).toBe(tcp);
    expect(await grpcServers()).toBe(servers);
  });

  it("closes the agent and operator listeners and shuts the operator service down when the metrics port is taken", async () => {
    const pki = await testPki();
    const [agentPort, operatorPort] = [await freePort(), await freePort()];
    const [servers, tcp] = [await grpcServers(), await tcpServers()];
    await expect(
      startServerOn(bmdb, pki, {
        publicListenAddress: `127.0.0.1:${agentPort}`,
        internalListenAddress: `127.0.0.1:${operatorPort}`,
        metricsListenAddress: `127.0.0.1:${portOf(blocker)}`,
      }),
    ).rejects.toThrow(`cannot listen for metrics on 127.0.0.1:${portOf(blocker)}: address already in use`);
    expect(await accepting(agentPort)).toBe(false);
    expect(await accepting(operatorPort)).toBe(false);
    expect(await tcpServers()).toBe(tcp);
    // The grpc-js server behind the operator listener was shut down, not just unplugged.
    expect(await grpcServers()).toBe(servers);
  });

  it("leaves the caller's database open, and a later start on the same ports succeeds", async () => {
    const pki = await testPki();
    const agentPort = await freePort();
    await expect(
      startServerOn(bmdb, pki, { publicListenAddress: `127.0.0.1:${agentPort}`, internalListenAddress: `127.0.0.1:${portOf(blocker)}` }),
    ).rejects.toThrow(/address already in use/);
    expect(await bmdb.createMachine()).toMatch(/^[0-9a-f-]{36}$/);
    const server = await startServerOn(bmdb, pki, { publicListenAddress: `127.0.0.1:${agentPort}` });
    try {
      expect(server.publicAddress).toBe(`127.0.0.1:${agentPort}`);
      expect(await accepting(agentPort)).toBe(true);
    } finally {
      await server.stop();
    }
    expect(await accepting(agentPort)).toBe(false);
  });
});
