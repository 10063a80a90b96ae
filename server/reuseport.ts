import { closeSync } from "node:fs";
import { loadNativeAddon } from "../lib/native-addon.js";
import type { ListenAddress } from "./listen.js";

// Sockets that share one port (SO_REUSEPORT, native/reuseport-listen.c):
// one per agent listener thread, so that each thread's TLS handshakes run on
// a core of their own, and several per thread, so that a busy thread still
// accepts a storm (./accept-sockets.ts). The kernel spreads new connections
// over them by address and port. Each is bound, not listening:
// net.Server.listen({ fd }) opens it, on the thread that will accept its
// connections. Copies of a descriptor (dup) share its socket and its queue.

interface ReusePortAddon {
  open(host: string, port: number, probe: boolean): { fd: number; port: number };
  dup(fd: number): number;
}

/**
 * Closes sockets of openSharedPort that no thread took (or would keep taking
 * a share of the port's connections that nobody accepts). One that a failed
 * listen closed already is skipped.
 */
export function closeUnused(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
}

const reusePortAddon = () => loadNativeAddon<ReusePortAddon>("reuseport_listen");

/**
 * `count` sockets bound to one port (address.port, or one the kernel picks
 * for the first), as file descriptors for net.Server.listen({ fd }), and
 * that port; or why they cannot be had (the addon was not built). Throws
 * "cannot listen for <what> on host:port: <reason>" as ./listen.ts does,
 * also when anybody listens on the port already.
 */
export function openSharedPort(address: ListenAddress, count: number, what: string): { fds?: number[]; port?: number; error?: string } {
  const { addon, error } = reusePortAddon();
  if (!addon) return { error: error! };
  const fds: number[] = [];
  let port = address.port;
  try {
    for (let i = 0; i < count; i++) {
      // The first is probed: a second server would otherwise join this one's group.
      const opened = addon.open(address.host, port, i === 0);
      fds.push(opened.fd);
      port = opened.port;
    }
  } catch (err) {
    closeUnused(fds);
    const e = err as Error & { code?: string };
    const reason = e.code === "EADDRINUSE" ? "address already in use" : e.code === "EACCES" ? "permission denied" : e.message.replace(/^[^:]*: /, "");
    throw new Error(`cannot listen for ${what} on ${address.host || "*"}:${address.port}: ${reason}`);
  }
  return { fds, port };
}

/** A new descriptor (close-on-exec) of the stream socket fd; throws when the addon was not built or fd is not one. */
export function copySocket(fd: number): number {
  const { addon, error } = reusePortAddon();
  if (!addon) throw new Error(error);
  return addon.dup(fd);
}

/**
 * `count` descriptors of one inherited listening socket (./inherited-sockets.ts):
 * the socket itself, then copies, one per further thread; all threads then
 * accept from the socket's one queue. Or why copies cannot be had.
 */
export function shareInheritedSocket(fd: number, count: number): { fds?: number[]; error?: string } {
  if (count <= 1) return { fds: [fd] };
  const { error } = reusePortAddon();
  if (error) return { error };
  try {
    return { fds: socketWithCopies(fd, count) };
  } catch (err) {
    throw new Error(`cannot use the inherited agent socket (fd ${fd}): ${(err as Error).message.replace(/^[^:]*: /, "")}`);
  }
}

/** fd, then count - 1 copies of it; throws (closing the copies made) when one cannot be made. */
export function socketWithCopies(fd: number, count: number): number[] {
  const copies: number[] = [];
  try {
    for (let i = 1; i < count; i++) copies.push(copySocket(fd));
  } catch (err) {
    closeUnused(copies);
    throw err;
  }
  return [fd, ...copies];
}
