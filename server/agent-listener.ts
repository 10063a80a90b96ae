import type * as grpc from "@grpc/grpc-js";
import type { Server, Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { listen, type ListenAddress } from "./listen.js";
import { identifyTlsPeer, PeerRegistry } from "./peer-identity.js";

// The public (agent) listener. Agents are untrusted and authenticate with a
// self-signed certificate, so Node's TLS must request a client certificate
// without verifying its chain; grpc-js would then hide that certificate from
// handlers (it only shows those of authorized sockets). So we own the TCP and
// TLS servers, decide each connection's identity once, and inject the socket
// into the gRPC server. A client that does not speak TLS at all is injected as
// plaintext, so it gets the UNAUTHENTICATED answer of the reference server
// rather than an opaque transport failure.

const TLS_HANDSHAKE_RECORD = 0x16;

export interface AgentListenerOptions {
  address: ListenAddress;
  cert: string;
  key: string;
  /** Connections that send nothing, or do not finish the TLS handshake, in time are dropped. */
  handshakeTimeoutMs?: number;
  logger: Logger;
}

export interface AgentListener {
  server: Server;
  peers: PeerRegistry;
}

export async function listenForAgents(
  grpcServer: grpc.Server,
  insecureCredentials: grpc.ServerCredentials,
  options: AgentListenerOptions,
): Promise<AgentListener> {
  const { logger } = options;
  const timeout = options.handshakeTimeoutMs ?? 10_000;
  const peers = new PeerRegistry();
  const injector = grpcServer.createConnectionInjector(insecureCredentials);

  const tlsServer = createTlsServer({
    cert: options.cert,
    key: options.key,
    minVersion: "TLSv1.3",
    requestCert: true,
    rejectUnauthorized: false,
    // grpc-go refuses servers that do not negotiate h2 by ALPN.
    ALPNProtocols: ["h2"],
    handshakeTimeout: timeout,
  });
  tlsServer.on("secureConnection", (socket: TLSSocket) => {
    peers.add(socket, identifyTlsPeer(socket));
    injector.injectConnection(socket);
  });
  tlsServer.on("tlsClientError", (err, socket) => {
    logger.debug({ err: err.message, peer: PeerRegistry.keyOf(socket) }, "agent TLS handshake failed");
  });

  const onConnection = (socket: Socket) => {
    socket.setNoDelay(true);
    socket.setTimeout(timeout, () => socket.destroy());
    socket.once("error", () => socket.destroy());
    // Peek at the first byte to tell TLS from plaintext, then hand the socket
    // on with that byte put back.
    socket.once("data", (chunk: Buffer) => {
      socket.pause();
      socket.unshift(chunk);
      // From here the TLS handshake timeout (or gRPC keepalive) takes over.
      socket.setTimeout(0);
      if (chunk[0] === TLS_HANDSHAKE_RECORD) {
        tlsServer.emit("connection", socket);
      } else {
        peers.add(socket, { kind: "refused", reason: "not TLS" });
        injector.injectConnection(socket);
      }
      // No resume(): TLS and HTTP/2 take the buffered byte from the socket
      // themselves when they start reading; flowing it now would lose it.
    });
  };

  const server = await listen(options.address, "agents", onConnection);
  return { server, peers };
}
