import { constants, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";

// gRPC's HTTP/2 mapping, for the agent listener's one unary method: enough of
// https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md to serve
// grpc-go and grpc-js agents, and no more. The agent listener serves gRPC
// itself rather than through grpc-js because it must decide per connection
// and per stream BEFORE any request body is buffered or decoded (grpc-js reads
// and deserializes the whole message before a handler sees the call), refuse
// with a status at once, bound the body as it arrives, know each call's
// deadline and cancellation, and tie every call to its own connection object.
// The operator listener stays on grpc-js.

/** gRPC status codes used on the agent listener (same numbers as grpc-js's `status`). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

/**
 * A status to send instead of a response. An answer, not a failure: it
 * carries no stack trace. Capturing one cost 2.1 s of the main thread's CPU
 * over a 30 s overload run (a refusal per call past the budget, 1,000/s).
 */
export class WireStatus extends Error {
  constructor(
    readonly code: Code,
    message: string,
    /** Extra trailers, e.g. grpc-retry-pushback-ms. */
    readonly trailers: Record<string, string> = {},
  ) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.name = "WireStatus";
  }
}

const CONTENT_TYPE = "application/grpc+proto";
const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** Milliseconds of a grpc-timeout header ("100m", "5S", …), or undefined. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m ? Number(m[1]) * TIMEOUT_UNITS[m[2]!]! : undefined;
}

/** Why a stream is not a gRPC call we serve, or undefined when it is one. */
export function checkRequestHeaders(headers: IncomingHttpHeaders, paths: ReadonlySet<string>): WireStatus | undefined {
  const type = headers["content-type"];
  if (headers[":method"] !== "POST" || typeof type !== "string" || !type.startsWith("application/grpc")) {
    return new WireStatus(Code.UNIMPLEMENTED, "not a gRPC request");
  }
  if (!paths.has(headers[":path"] ?? "")) return new WireStatus(Code.UNIMPLEMENTED, `unknown method ${String(headers[":path"]).slice(0, 100)}`);
  const encoding = headers["grpc-encoding"];
  if (encoding !== undefined && encoding !== "identity") return new WireStatus(Code.UNIMPLEMENTED, "compressed requests are not supported");
  return undefined;
}

// Percent-encoding of grpc-message: printable ASCII but '%' stays as is.
function encodeMessage(message: string): string {
  return encodeURIComponent(message.slice(0, 512));
}

/** True when the call can still be answered. */
export function isOpen(stream: ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed && !stream.headersSent;
}

/**
 * Answers with a status and no message (a trailers-only response).
 */
export function sendStatus(stream: ServerHttp2Stream, status: WireStatus): boolean {
  if (!isOpen(stream)) return false;
  stream.respond({ ":status": 200, "content-type": CONTENT_TYPE }, { waitForTrailers: true });
  stream.once("wantTrailers", () =>
    stream.sendTrailers({ "grpc-status": String(status.code), "grpc-message": encodeMessage(status.message), ...status.trailers }),
  );
  stream.end();
  // A client may still be uploading: what it sends is bounded by the stream's
  // flow-control window, since nobody reads it. Reset the stream a little
  // later (an immediate RST_STREAM can overtake the status in nghttp2's queue),
  // and only if the upload is still going: a refused call's one small message
  // has ended by then, and resetting every refused stream cost 2.2 s of the
  // main thread over a 30 s overload run (and, on a busy server, could still
  // overtake a status not yet flushed).
  if (!stream.readableEnded) {
    setTimeout(() => {
      if (!stream.closed && !stream.readableEnded) stream.close(constants.NGHTTP2_NO_ERROR);
    }, 500).unref();
  }
  return true;
}

/** Answers with one message and status OK. */
export function sendMessage(stream: ServerHttp2Stream, message: Uint8Array): boolean {
  if (!isOpen(stream)) return false;
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  stream.respond({ ":status": 200, "content-type": CONTENT_TYPE, "grpc-accept-encoding": "identity" }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.end(frame);
  return true;
}

/**
 * Reads the one message of a unary call. The length prefix is checked before
 * the body is collected, so a request over maxBytes costs at most one flow
 * control window, never its announced size.
 */
export function readUnaryMessage(stream: ServerHttp2Stream, maxBytes: number, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let expected = -1;
    const timer = setTimeout(() => finish(new WireStatus(Code.DEADLINE_EXCEEDED, "request not received in time")), Math.max(0, timeoutMs));
    const finish = (error: WireStatus | undefined, body?: Uint8Array) => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onClose);
      if (error) reject(error);
      else resolve(body!);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (expected < 0 && received >= 5) {
        const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        if (head[0] !== 0) return finish(new WireStatus(Code.UNIMPLEMENTED, "compressed requests are not supported"));
        expected = head.readUInt32BE(1);
        if (expected > maxBytes) {
          return finish(new WireStatus(Code.RESOURCE_EXHAUSTED, `request of ${expected} bytes is larger than the limit of ${maxBytes}`));
        }
      }
      if (expected >= 0 && received > 5 + expected) return finish(new WireStatus(Code.INVALID_ARGUMENT, "a unary call carries exactly one message"));
    };
    const onEnd = () => {
      if (expected < 0 || received !== 5 + expected) return finish(new WireStatus(Code.INVALID_ARGUMENT, "incomplete request message"));
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
      finish(undefined, all.subarray(5));
    };
    const onClose = () => finish(new WireStatus(Code.CANCELLED, "stream closed by the client"));
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("close", onClose);
  });
}
