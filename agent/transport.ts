import * as grpc from "@grpc/grpc-js";
import type { KeyObject } from "node:crypto";
import { AgentCallback } from "../gen/cloud/agent/api/agent_callback_pb.js";
import { createAgentCertificate } from "../lib/certs.js";
import { createClient } from "../lib/grpc-adapter.js";
import type { HeartbeatTransport } from "./agent.js";

export interface TransportOptions {
  server: string;
  key: KeyObject;
  /** A PEM certificate chain for key (leaf first), e.g. signed by an enrollment CA; default: an ephemeral self-signed one. */
  certPem?: string;
  /** PEM CA to verify the server with; omitted only with insecure. */
  caPem?: string;
  /** Skip verifying the server: for labs only. */
  insecure: boolean;
  deadlineMs?: number;
}

/**
 * A heartbeat transport over one long-lived gRPC connection, authenticated by
 * an ephemeral self-signed certificate made from the agent key at start, or
 * by the given certificate (--cert).
 */
export async function grpcTransport(options: TransportOptions): Promise<{ transport: HeartbeatTransport; close: () => void }> {
  const cert = options.certPem ? undefined : await createAgentCertificate(options.key);
  const key = Buffer.from(options.key.export({ format: "pem", type: "pkcs8" }));
  const chain = Buffer.from(options.certPem ?? cert!.cert);
  const credentials = options.insecure
    ? grpc.credentials.createSsl(null, key, chain, { rejectUnauthorized: false })
    : grpc.credentials.createSsl(Buffer.from(options.caPem!), key, chain);
  const client = createClient(AgentCallback, options.server, credentials, {
    // Keep the one connection alive through NATs between heartbeats.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
  });
  const deadlineMs = options.deadlineMs ?? 30_000;
  return {
    transport: (request) => client.heartbeat(request, { deadline: Date.now() + deadlineMs }),
    close: () => client.close(),
  };
}
