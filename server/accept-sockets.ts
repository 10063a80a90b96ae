import type { Server, Socket } from "node:net";
import { listen, stopListening, type ListenAddress } from "./listen.js";
import { closeUnused, openSharedPort, socketWithCopies } from "./reuseport.js";

// Several listening handles for one listener thread, so that a reconnect
// storm is accepted as fast as it arrives. libuv (1.45 and later: Node 20
// has 1.46) accepts ONE connection per listening handle per event-loop
// iteration (libuv/libuv#3696), and while a fleet reconnects each iteration
// of the agent listener's thread is full of TLS work: in a 10,000-agent
// storm on 2 cores the port's accept queue (4,096, net.core.somaxconn) stood
// full for 7 s and the kernel dropped ~28,000 SYNs and handshake ACKs
// (ListenOverflows), each costing its agent a 1 s, 3 s, 7 s… retransmit,
// while the thread's own queue of connections waiting for a handshake slot
// (./agent-connections.ts) was often empty. With n handles a turn of the
// loop accepts up to n connections; those beyond the handshake slots wait
// in the gate, unread, which costs only their socket.
//
// Where the listener binds the address itself the n handles are a
// SO_REUSEPORT group of n sockets (each its own accept queue, so the port
// also queues n × somaxconn); where it is given a socket (a listener
// thread's, or systemd's) they are that socket and n - 1 copies of its
// descriptor, all taking from its one queue. Without the native addon: one
// handle, as before.

/** Listening handles per listener thread. */
export const ACCEPT_HANDLES = 16;

export interface AcceptSockets {
  /** The first handle's server: its address is the listener's. */
  readonly server: Server;
  readonly servers: readonly Server[];
  /** Handles that could be had: ACCEPT_HANDLES, or 1 where the addon is missing (and why, then). */
  readonly handles: number;
  readonly fallbackReason?: string;
  close(): Promise<void>;
}

/**
 * Listens for `what` on `fd` (with copies of it) or on address (a
 * SO_REUSEPORT group), handing every connection to onConnection, paused.
 * Rejects with ./listen.ts's one-line reasons.
 */
export async function listenWithHandles(
  address: ListenAddress,
  fd: number | undefined,
  what: string,
  onConnection: (socket: Socket) => void,
  handles = ACCEPT_HANDLES,
): Promise<AcceptSockets> {
  const opened = fd === undefined ? openSharedPort(address, handles, what) : copiesOf(fd, handles);
  if (!opened.fds) {
    const server = await listen(address, what, onConnection, { pauseOnConnect: true, ...(fd !== undefined && { fd }) });
    return { server, servers: [server], handles: 1, fallbackReason: opened.error!, close: () => stopListening(server) };
  }
  const servers: Server[] = [];
  try {
    for (const each of opened.fds) servers.push(await listen(address, what, onConnection, { pauseOnConnect: true, fd: each }));
  } catch (err) {
    await Promise.all(servers.map(stopListening));
    closeUnused(opened.fds.slice(servers.length));
    throw err;
  }
  return { server: servers[0]!, servers, handles: servers.length, close: () => Promise.all(servers.map(stopListening)).then(() => {}) };
}

/** fd and count - 1 copies of it; or why copies cannot be had. */
function copiesOf(fd: number, count: number): { fds?: number[]; error?: string } {
  try {
    return { fds: socketWithCopies(fd, count) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}
