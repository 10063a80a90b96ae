import * as grpc from "@grpc/grpc-js";
import type { KeyObject } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { openBmdb, type Bmdb, type BmdbOptions } from "../../bmdb/index.js";
import { OperatorService } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { AgentCallback } from "../../gen/cloud/bmaas/server/api/agent_pb.js";
import { createAgentCertificate, createDevPki, generateAgentKey, rawEd25519PublicKey } from "../../lib/certs.js";
import { createClient } from "../../lib/grpc-adapter.js";
import { BmaasServer, type ServerOptions } from "../../server/server.js";
import type { BackendFactory, TestDatabase } from "./databases.js";

export type Pki = Awaited<ReturnType<typeof createDevPki>>;

let pkiPromise: Promise<Pki> | undefined;
/** One development PKI per test file: generating keys is cheap, but not free. */
export function testPki(): Promise<Pki> {
  return (pkiPromise ??= createDevPki());
}

export const quietLogger = pino({ level: process.env.LOG_LEVEL ?? "silent" });

// A private subchannel pool per client, so that each test client really has
// its own connection (and so its own certificate), as distinct agents would.
const OWN_CONNECTION: grpc.ClientOptions = { "grpc.use_local_subchannel_pool": 1 };

export interface TestServer {
  server: BmaasServer;
  bmdb: Bmdb;
  pki: Pki;
  operator: ReturnType<typeof operatorClient>;
  stop(): Promise<void>;
}

/** A real server on ephemeral loopback ports over a fresh database of backend. */
export async function startTestServer(
  backend: BackendFactory,
  overrides: Partial<ServerOptions> = {},
  bmdbOptions: BmdbOptions = {},
): Promise<TestServer & { db: TestDatabase }> {
  const db = await backend.create();
  const bmdb = await openBmdb(db.url, bmdbOptions);
  const pki = await testPki();
  const server = await startServerOn(bmdb, pki, overrides);
  const operator = operatorClient(server.internalAddress, pki);
  return {
    server,
    bmdb,
    pki,
    db,
    operator,
    async stop() {
      operator.close();
      await server.stop();
      await bmdb.close();
      await db.drop();
    },
  };
}

/** A real server on ephemeral loopback ports over bmdb, presenting pki's server certificate. */
export function startServerOn(bmdb: Bmdb, pki: Pki, overrides: Partial<ServerOptions> = {}): Promise<BmaasServer> {
  return BmaasServer.start({
    publicListenAddress: "127.0.0.1:0",
    internalListenAddress: "127.0.0.1:0",
    serverCert: pki.server.cert,
    serverKey: pki.server.key,
    operatorCa: pki.ca.cert,
    maxRequestBytes: 4 * 1024 * 1024,
    shutdownGraceMs: 2_000,
    // Tests sweep, expire and refresh explicitly, on their own clock.
    staleSweepIntervalMs: 0,
    admissionPendingExpiryMs: 0,
    bmdb,
    logger: quietLogger,
    ...overrides,
  });
}

/** A directory laid out like npm start's dev certificates, for bmctl --certs-dir. */
export function writeCertsDir(dir: string, pki: Pki, operator = pki.operator): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "ca.pem"), pki.ca.cert);
  writeFileSync(join(dir, "operator.pem"), operator.cert);
  writeFileSync(join(dir, "operator-key.pem"), operator.key);
  return dir;
}

export function operatorClient(address: string, pki: Pki, identity = pki.operator) {
  const creds = grpc.credentials.createSsl(Buffer.from(pki.ca.cert), Buffer.from(identity.key), Buffer.from(identity.cert));
  return createClient(OperatorService, address, creds, OWN_CONNECTION);
}

/** A simulated agent: its own Ed25519 key, ephemeral certificate and connection. */
export interface TestAgent {
  key: KeyObject;
  publicKey: Uint8Array;
  client: ReturnType<typeof createClient<(typeof AgentCallback)["method"]>>;
  credentials: grpc.ChannelCredentials;
}

export async function newAgent(address: string, pki: Pki, key: KeyObject = generateAgentKey()): Promise<TestAgent> {
  const cert = await createAgentCertificate(key);
  const credentials = grpc.credentials.createSsl(Buffer.from(pki.ca.cert), Buffer.from(cert.key), Buffer.from(cert.cert));
  return { key, publicKey: rawEd25519PublicKey(key), client: createClient(AgentCallback, address, credentials, OWN_CONNECTION), credentials };
}

/** The gRPC status code of a rejected call (or "OK"). */
export async function codeOf(p: Promise<unknown>): Promise<grpc.status> {
  try {
    await p;
    return grpc.status.OK;
  } catch (e) {
    return (e as grpc.ServiceError).code;
  }
}

export async function errorOf(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error("expected the call to fail");
}

/** A self-signed ECDSA P-256 client certificate, PEM. */
export async function ecdsaSelfSigned(): Promise<{ cert: string; key: string }> {
  const { webcrypto } = await import("node:crypto");
  const x509 = await import("@peculiar/x509");
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as unknown as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=not-an-agent",
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3600_000),
    keys,
    signingAlgorithm: alg,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey as unknown as Parameters<typeof webcrypto.subtle.exportKey>[1]));
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString("pem"), key };
}

/** A clock tests move by hand. */
export function testClock(start = new Date("2026-01-01T00:00:00Z")) {
  let now = start.getTime();
  return {
    now: () => new Date(now),
    advance(ms: number) {
      now += ms;
    },
  };
}
