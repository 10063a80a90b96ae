import type { Socket } from "node:net";
import { loadNativeAddon } from "../lib/native-addon.js";

// Whether an accepted TCP connection's peer has already hung up, before any
// TLS work is spent on it (native/peer-hung-up.c says why: in a reconnect
// storm, connections that the kernel establishes late, after their agent gave
// up and closed, arrive holding a ClientHello and a FIN).

interface HungUpAddon {
  hungUp(fd: number): boolean;
  supported: boolean;
}

function hungUpAddon(): HungUpAddon | undefined {
  const { addon } = loadNativeAddon<HungUpAddon>("peer_hung_up");
  return addon?.supported ? addon : undefined;
}

/**
 * True when the socket's peer has closed its side (FIN or reset), though data
 * it sent may still be unread. A TLS client that closed before its handshake
 * began can never finish it. False when unknown: no addon, or no descriptor
 * (a socket that is not a kernel TCP socket).
 */
export function peerHungUp(socket: Socket): boolean {
  const a = hungUpAddon();
  // net.Socket keeps its libuv handle in _handle; on Unix the handle has the descriptor.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return a !== undefined && typeof fd === "number" && fd >= 0 && a.hungUp(fd);
}
