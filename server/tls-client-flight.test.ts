import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from "node:net";
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAgentCertificate, createDevPki, generateAgentKey } from "../lib/certs.js";
import { ClientFlight, countClientCertificates } from "./tls-client-flight.js";

// Real TLS 1.3 handshakes through a ClientFlight: the certificate entries a
// client sent are counted from its encrypted records, for each TLS 1.3 suite.

interface Seen {
  suite: string;
  count: number | undefined;
  /** The same records read with another connection's secret. */
  foreign: number | undefined;
}

let net: NetServer;
let port: number;
const seen: Seen[] = [];
let agent: { cert: string; key: string };
let other: { cert: string; key: string };

beforeAll(async () => {
  const pki = await createDevPki(["localhost"]);
  agent = await createAgentCertificate(generateAgentKey());
  other = await createAgentCertificate(generateAgentKey());
  const tls = createTlsServer({ cert: pki.server.cert, key: pki.server.key, minVersion: "TLSv1.3", requestCert: true, rejectUnauthorized: false });
  const secrets = new Map<TLSSocket, string>();
  const flights = new Map<string, ClientFlight>();
  let lastSecret = "";
  tls.on("keylog", (line: Buffer, socket: TLSSocket) => {
    const [label, random, secret] = line.toString("latin1").trim().split(" ");
    if (label === "CLIENT_HANDSHAKE_TRAFFIC_SECRET") secrets.set(socket, `${random} ${secret}`);
  });
  tls.on("secureConnection", (socket: TLSSocket) => {
    const [random, secret] = secrets.get(socket)!.split(" ") as [string, string];
    const flight = flights.get(random)!;
    const suite = socket.getCipher().standardName;
    seen.push({ suite, count: countClientCertificates(flight.records, suite, secret), foreign: lastSecret ? countClientCertificates(flight.records, suite, lastSecret) : undefined });
    lastSecret = secret;
    socket.end();
  });
  tls.on("tlsClientError", () => {});
  net = createNetServer((raw) => {
    tls.emit("connection", new ClientFlight(raw, (f) => flights.set(f.clientRandom!, f)));
  });
  await new Promise<void>((resolve) => net.listen(0, "127.0.0.1", resolve));
  port = (net.address() as AddressInfo).port;
});

afterAll(() => new Promise<void>((resolve) => net.close(() => resolve())));

function handshake(options: { cert?: string; key?: string; ciphers?: string }): Promise<Seen> {
  const before = seen.length;
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...options });
    socket.on("error", reject);
    socket.on("data", () => {});
    socket.on("close", () => (seen.length > before ? resolve(seen[before]!) : reject(new Error("no handshake seen"))));
  });
}

describe("countClientCertificates", () => {
  it.each(["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"])("counts one certificate under %s", async (suite) => {
    expect(await handshake({ ...agent, ciphers: suite })).toMatchObject({ suite, count: 1 });
  });

  it("counts every certificate sent, chained to the leaf or not", async () => {
    expect((await handshake({ cert: agent.cert + other.cert, key: agent.key })).count).toBe(2);
    expect((await handshake({ cert: agent.cert + other.cert + agent.cert, key: agent.key })).count).toBe(3);
  });

  it("counts none when the client sends no certificate", async () => {
    expect((await handshake({})).count).toBe(0);
  });

  it("reads nothing with another connection's secret", async () => {
    await handshake(agent);
    expect((await handshake(agent)).foreign).toBeUndefined();
  });
});
