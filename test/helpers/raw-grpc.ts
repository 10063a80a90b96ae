import { connect, type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";

// A bare gRPC client over node:http2, for tests that must control exactly what
// goes on the wire (bodies that lie about their size, many streams, the
// transport under each call) — things a real gRPC client will not send.

export const HEARTBEAT_PATH = "/cloud.bmaas.server.api.AgentCallback/Heartbeat";

export interface RawReply {
  /** grpc-status, or -1 when the stream ended without one. */
  code: number;
  message: string;
  headers: IncomingHttpHeaders;
  /** The response message, without its 5-byte prefix. */
  body: Buffer;
  ms: number;
}

/** The 5-byte gRPC prefix and the message; `announce` lies about the length when given. */
export function frame(message: Uint8Array, announce = message.length): Buffer {
  const b = Buffer.alloc(5 + message.length);
  b.writeUInt32BE(announce, 1);
  b.set(message, 5);
  return b;
}

/** An HTTP/2 session over plaintext TCP or TLS (tls options given), optionally from a fixed local address and port. */
export function rawSession(address: string, tls?: ConnectionOptions, local?: { localAddress: string; localPort?: number }): Promise<ClientHttp2Session> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const session = connect(`http://${address}`, {
      // Room for large hostile uploads on the client side (Node's default is 10 MB).
      maxSessionMemory: 256,
      createConnection: (): Socket =>
        tls
          ? tlsConnect({ host, port, ALPNProtocols: ["h2"], rejectUnauthorized: false, ...local, ...tls })
          : netConnect({ host, port, ...local }),
    });
    session.once("connect", () => resolve(session));
    session.once("error", reject);
  });
}

export function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i).replace(/^\[|\]$/g, ""), Number(address.slice(i + 1))];
}

/** One unary call with exactly these body bytes (already framed). */
export function rawCall(session: ClientHttp2Session, body: Buffer, path = HEARTBEAT_PATH, extra: Record<string, string> = {}): Promise<RawReply> {
  const started = Date.now();
  return new Promise((resolve) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...extra });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", () => {});
    stream.on("close", () => {
      const all = { ...headers, ...trailers };
      const data = Buffer.concat(chunks);
      resolve({
        code: all["grpc-status"] === undefined ? -1 : Number(all["grpc-status"]),
        message: decodeURIComponent(String(all["grpc-message"] ?? "")),
        headers: all,
        body: data.subarray(5),
        ms: Date.now() - started,
      });
    });
    stream.end(body);
  });
}
