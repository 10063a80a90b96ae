import { execFileSync } from "node:child_process";
import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { acceptQueues, deepestAcceptQueue } from "../test/helpers/accept-queues.js";
import { ACCEPT_HANDLES, listenWithHandles, type AcceptSockets } from "./accept-sockets.js";
import { openSharedPort } from "./reuseport.js";

// libuv accepts one connection per listening handle per turn of the event
// loop; the listener's handles are what lets one turn take a burst.

const LOOPBACK = { host: "127.0.0.1", port: 0 };
const BURST = 100;

/** Connects BURST sockets to port from another process while this one's event loop is blocked, then closes them. */
function burstWhileBlocked(port: number): void {
  const script = `
    const net = require("node:net");
    let open = 0;
    const all = [];
    for (let i = 0; i < ${BURST}; i++) {
      const s = net.connect(${port}, "127.0.0.1", () => { if (++open === ${BURST}) { for (const t of all) t.destroy(); } });
      all.push(s);
    }`;
  execFileSync(process.execPath, ["-e", script], { timeout: 10_000 });
}

/** The most connections of a burst (made while this event loop was blocked) that one turn of the loop accepted, and how many in all. */
async function mostAcceptedInOneTurn(listening: AcceptSockets, accepted: Socket[]): Promise<{ perTurn: number; all: number }> {
  const port = (listening.server.address() as { port: number }).port;
  burstWhileBlocked(port);
  // The count at each turn's check phase (setImmediate), which follows its poll phase (accepts).
  const counts: number[] = [];
  await new Promise<void>((resolve) => {
    const turn = () => (counts.push(accepted.length) < 6 ? setImmediate(turn) : resolve());
    setImmediate(turn);
  });
  const perTurn = Math.max(...counts.slice(1).map((n, i) => n - counts[i]!));
  const deadline = Date.now() + 5_000;
  while (accepted.length < BURST && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return { perTurn, all: accepted.length };
}

/** Listens (on fd, or a group for LOOPBACK) with `handles` handles, runs body, then closes every connection and handle; the port. */
async function withListener(
  fd: number | undefined,
  handles: number,
  body: (listening: AcceptSockets, port: number, accepted: Socket[]) => Promise<void>,
): Promise<number> {
  const accepted: Socket[] = [];
  const listening = await listenWithHandles(LOOPBACK, fd, "test", (s) => accepted.push(s.on("error", () => {})), handles);
  const port = (listening.server.address() as { port: number }).port;
  try {
    await body(listening, port, accepted);
  } finally {
    for (const s of accepted) s.destroy();
    await listening.close();
  }
  return port;
}

describe("listenWithHandles", () => {
  it("binds a SO_REUSEPORT group of its handles, each with the full queue, and takes a burst many connections a turn", async () => {
    await withListener(undefined, ACCEPT_HANDLES, async (listening, port, accepted) => {
      expect(listening.handles).toBe(ACCEPT_HANDLES);
      expect(acceptQueues(port)).toEqual(Array.from({ length: ACCEPT_HANDLES }, () => deepestAcceptQueue()));
      const { perTurn, all } = await mostAcceptedInOneTurn(listening, accepted);
      // One handle takes one a turn; the kernel spreads 100 over 16 queues, each giving one.
      expect(perTurn).toBeGreaterThanOrEqual(8);
      expect(all).toBe(BURST);
    });
  });

  it("takes a given socket with copies of it: one queue, as many handles", async () => {
    const { fds } = openSharedPort(LOOPBACK, 1, "test");
    const port = await withListener(fds![0], ACCEPT_HANDLES, async (listening, port, accepted) => {
      expect(listening.handles).toBe(ACCEPT_HANDLES);
      expect(acceptQueues(port)).toEqual([deepestAcceptQueue()]);
      const { perTurn, all } = await mostAcceptedInOneTurn(listening, accepted);
      expect(perTurn).toBeGreaterThanOrEqual(8);
      expect(all).toBe(BURST);
    });
    // Every copy is closed: nothing listens on the port any more.
    const refused = await new Promise<string>((resolve) => connect(port, "127.0.0.1").once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "")).once("connect", () => resolve("connected")));
    expect(refused).toBe("ECONNREFUSED");
  });

  it("with one handle, a turn takes one connection of the burst (why there are several)", async () => {
    await withListener(undefined, 1, async (listening, _port, accepted) => {
      const { perTurn, all } = await mostAcceptedInOneTurn(listening, accepted);
      expect(perTurn).toBe(1);
      expect(all).toBe(BURST);
    });
  });
});
