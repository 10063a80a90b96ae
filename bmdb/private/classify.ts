// Which database errors mean what. Only the driver and the connection failing
// make the database "unavailable"; everything else is either a serialization
// conflict worth repeating or a bug of ours that must surface as such.

/**
 * - retry: repeating the whole transaction can succeed (40001, 40P01);
 * - connection: the database or the connection to it is gone; opens the breaker;
 * - unavailable: no answer now, but nothing is known of the database (the pool
 *   queue timed out, the handle is being closed); does not touch the breaker;
 * - bug: anything else, including errors the database did answer with.
 */
export type ErrorClass = "retry" | "connection" | "unavailable" | "bug";

/** Our own drivers' "the connection is gone" (the PGlite worker died). SQLSTATE 08006 connection_failure. */
export class ConnectionLostError extends Error {
  readonly code = "08006";
  constructor(message: string) {
    super(message);
    this.name = "ConnectionLostError";
  }
}

/** Our own drivers' "the database handle was closed" (shutdown). */
export class DriverClosedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DriverClosedError";
  }
}

/** SQLSTATEs of a lost or refused connection. */
function isConnectionSqlState(code: string): boolean {
  return (
    code.startsWith("08") || // connection_exception and its subclasses
    code === "57P01" || // admin_shutdown: terminating connection due to administrator command
    code === "57P02" || // crash_shutdown
    code === "57P03" || // cannot_connect_now: the database system is starting up / shutting down
    code === "53300" // too_many_connections
  );
}

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED", "EHOSTUNREACH", "ENETUNREACH", "ENOTCONN"]);

// pg and pg-pool report these as plain Errors without a code.
const CONNECTION_MESSAGES = [
  /^Connection terminated/, // "… unexpectedly", "… due to connection timeout", plain "Connection terminated"
  /^Client has encountered a connection error and is not queryable/,
  /^Client was closed and is not queryable/,
  /^Query read timeout/,
];
const UNAVAILABLE_MESSAGES = [
  // pg-pool: no client became free within connectionTimeoutMillis (load, not a dead database).
  /^timeout exceeded when trying to connect/,
  // The handle is being closed (server shutdown) while calls are in flight.
  /^Cannot use a pool after calling end on the pool/,
  /^driver has already been destroyed/,
];

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

export function classifyError(error: unknown): ErrorClass {
  return classify(error, 0);
}

function classify(error: unknown, depth: number): ErrorClass {
  if (error === null || typeof error !== "object" || depth > 4) return "bug";
  const code = codeOf(error);
  if (code === "40001" || code === "40P01") return "retry";
  if (code !== undefined && (isConnectionSqlState(code) || NETWORK_CODES.has(code))) return "connection";
  if (error instanceof DriverClosedError) return "unavailable";
  const message = error instanceof Error ? error.message : "";
  if (CONNECTION_MESSAGES.some((re) => re.test(message))) return "connection";
  if (UNAVAILABLE_MESSAGES.some((re) => re.test(message))) return "unavailable";
  // Node reports a connect to a name with several addresses as an
  // AggregateError of one error per address.
  if (error instanceof AggregateError) {
    const inner = error.errors.map((e: unknown) => classify(e, depth + 1));
    if (inner.length > 0 && inner.every((c) => c === "connection")) return "connection";
  }
  // pg-pool wraps the dial error of a timed-out connect in `cause`.
  const cause = (error as { cause?: unknown }).cause;
  if (cause !== undefined && classify(cause, depth + 1) === "connection") return "connection";
  return "bug";
}

/** One line that says why, for logs and the breaker's state reason. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = codeOf(error);
    return code && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}
