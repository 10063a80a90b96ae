import * as grpc from "@grpc/grpc-js";
import { diagnoseConnection, type TlsMaterial } from "../private/diagnose.js";
import { oneLine } from "../private/fail.js";
import { DEADLINE_MS, type GlobalFlags } from "./client.js";

// Every failure of a command becomes one line in the user's terms: which
// failure it was (unknown machine, unreachable server, refused certificate…),
// never a stack or the server's internals.

/** A watch stream the server ended with an error, and whether events had started to flow. */
export class WatchEnded extends Error {
  constructor(
    readonly error: grpc.ServiceError,
    readonly started: boolean,
  ) {
    super(error.message);
  }
}

/**
 * Why the server ended a watch, in the user's terms. The server's own text is
 * not shown where it may carry internals (a database error, a stack): an
 * ended watch needs only what to do next.
 */
function explainWatchEnd(err: grpc.ServiceError, server: string): string | undefined {
  switch (err.code) {
    case grpc.status.RESOURCE_EXHAUSTED:
      return `the server at ${server} ended the watch: it fell too far behind the events; watch again (bmctl machine get shows the current state)`;
    case grpc.status.INTERNAL:
    case grpc.status.UNKNOWN:
    case grpc.status.DATA_LOSS:
      return `the server at ${server} ended the watch with an internal error (${grpc.status[err.code]}); its log has the details`;
    case grpc.status.UNAVAILABLE:
      return `the server at ${server} ended the watch: machine events are unavailable right now (UNAVAILABLE); watch again later`;
    default:
      return undefined;
  }
}

/** One line per failure, naming what went wrong in the user's terms. */
export async function explain(e: unknown, flags: GlobalFlags, tls: TlsMaterial | undefined): Promise<string> {
  if (e instanceof WatchEnded) {
    // Before the first response an UNAVAILABLE is the connection's: diagnosed below.
    const why = e.started || e.error.code !== grpc.status.UNAVAILABLE ? explainWatchEnd(e.error, flags.server) : undefined;
    if (why) return why;
    e = e.error;
  }
  const err = e as Partial<grpc.ServiceError>;
  // What the server says is shown as one line without control characters.
  const details = oneLine(err.details ?? "", 300);
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      if (/Name resolution failed/.test(err.details ?? "")) return `cannot reach the server at ${flags.server}: unknown host`;
      return tls ? diagnoseConnection(flags.server, tls) : `cannot reach the server at ${flags.server}: ${details}`;
    case grpc.status.DEADLINE_EXCEEDED:
      return `the server at ${flags.server} did not answer within ${DEADLINE_MS / 1000}s`;
    case grpc.status.NOT_FOUND:
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.FAILED_PRECONDITION:
      return details || "request refused";
    case grpc.status.INTERNAL:
    case grpc.status.UNKNOWN:
    case grpc.status.DATA_LOSS:
      return `the server at ${flags.server} failed (${grpc.status[err.code]}); its log has the details`;
    case undefined:
      return (e as Error).message;
    default:
      return `${grpc.status[err.code] ?? `code ${err.code}`}: ${details}`;
  }
}
