import { closeSync } from "node:fs";
import { loadNativeAddon } from "../lib/native-addon.js";
import type { ListenAddress } from "./listen.js";

// Listening sockets that share one port (SO_REUSEPORT), one per agent
// listener thread (native/reuseport-listen.c): the kernel spreads new
// connections over them by address and port, so each thread's TLS handshakes
// run on a core of their own.

interface ReusePortAddon {
  open(host: string, port: number, backlog: number, probe: boolean): { fd: number; port: number };
}

/** A deep accept queue, as ./listen.ts asks for (Linux caps it at net.core.somaxconn). */
const BACKLOG = 65535;

/**
 * `count` listening sockets on one port (address.port, or one the kernel
 * picks for the first), as file descriptors for net.Server.listen({ fd }); or
 * why they cannot be had (the addon was not built). Throws "cannot listen for
 * <what> on host:port: <reason>" as ./listen.ts does.
 */
export function openSharedPort(address: ListenAddress, count: number, what: string): { fds?: number[]; error?: string } {
  const { addon, error } = loadNativeAddon<ReusePortAddon>("reuseport_listen");
  if (!addon) return { error: error! };
  const fds: number[] = [];
  let port = address.port;
  try {
    for (let i = 0; i < count; i++) {
      // The first fails if anybody listens on the port already (a second
      // server would otherwise join this one's group: see the addon).
      const opened = addon.open(address.host, port, BACKLOG, i === 0);
      fds.push(opened.fd);
      port = opened.port;
    }
  } catch (err) {
    for (const fd of fds) closeSync(fd);
    const reason = (err as Error).message.replace(/^[^:]*: /, "");
    throw new Error(`cannot listen for ${what} on ${address.host || "*"}:${address.port}: ${/in use/i.test(reason) ? "address already in use" : reason}`);
  }
  return { fds };
}
