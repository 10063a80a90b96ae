import { createServer, type Server, type Socket } from "node:net";

/** A parsed listen address; host "" means every interface. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses "host:port", ":port" or "[v6]:port". */
export function parseListenAddress(text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`invalid listen address "${text}": want HOST:PORT, :PORT or [V6]:PORT`);
  return { host: m[1] ?? m[2] ?? "", port };
}

/** "host:port" of a listening server, for logs and clients. */
export function boundAddress(server: Server): string {
  const a = server.address();
  if (a === null || typeof a === "string") throw new Error("server is not listening on TCP");
  return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/**
 * Listens on address and hands every connection to onConnection. Rejects with
 * a one-line reason (address in use, permission) instead of crashing later.
 */
export function listen(
  address: ListenAddress,
  what: string,
  onConnection: (socket: Socket) => void,
  options: { pauseOnConnect?: boolean; fd?: number } = {},
): Promise<Server> {
  return startListening(createServer({ pauseOnConnect: options.pauseOnConnect ?? false }, onConnection), address, what, options.fd);
}

/** The accept queue asked for (the kernel caps it at net.core.somaxconn). */
const ACCEPT_BACKLOG = 65535;

/**
 * Starts server (any net.Server: plain, HTTP, HTTPS) listening on address,
 * or on the listening socket `fd` made for it (./reuseport.ts) or inherited
 * (./inherited-sockets.ts); rejects with "cannot listen for <what> on
 * host:port: <reason>".
 */
export function startListening<S extends Server>(server: S, address: ListenAddress, what: string, fd?: number): Promise<S> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const reason =
        err.code === "EADDRINUSE" ? "address already in use" : err.code === "EACCES" ? "permission denied" : err.message;
      // A socket given by fd was bound elsewhere (./reuseport.ts) or inherited, whatever address says.
      const where = fd === undefined ? `${address.host || "*"}:${address.port}` : `descriptor ${fd}`;
      reject(new Error(`cannot listen for ${what} on ${where}: ${reason}`));
    };
    server.once("error", onError);
    // A deep accept queue: after a restart a whole fleet reconnects at once,
    // and a SYN dropped from a full queue costs its agent a 1 s retransmit
    // (then 3 s, 7 s…). Linux caps it at net.core.somaxconn (4096 on Debian
    // 12): a 10,000-agent reconnect storm there counted ~40,000 dropped SYNs
    // (ListenOverflows). README: raise somaxconn for fleets larger than that.
    const listening = () => {
      server.off("error", onError);
      resolve(server);
    };
    // On a socket given by fd, Node 20 ignores options.backlog and listens
    // with 511 (only a backlog passed as an argument reaches that path): the
    // SO_REUSEPORT threads' sockets and an inherited socket had a queue of
    // 511 instead of 4,096.
    if (fd === undefined) server.listen({ port: address.port, ...(address.host ? { host: address.host } : {}), backlog: ACCEPT_BACKLOG }, listening);
    else server.listen({ fd }, ACCEPT_BACKLOG, listening);
  });
}

/** Stops accepting connections; open connections are left to their owner. */
export function stopListening(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
