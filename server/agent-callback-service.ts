import { toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { DurationSchema, durationFromMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { DatabaseUnavailableError, type Refusal } from "../bmdb/index.js";
import { AgentCallback as NewAgentCallback } from "../gen/cloud/agent/api/agent_callback_pb.js";
import { AgentCallback, HeartbeatResponseSchema } from "../gen/cloud/bmaas/server/api/agent_pb.js";
import type { AgentCall } from "./agent-call.js";
import type { AgentCallHandler } from "./agent-listener.js";
import { Code, WireStatus } from "./grpc-wire.js";
import { parseHeartbeatRequest } from "./heartbeat-request.js";
import type { HeartbeatQueue } from "./heartbeat-queue.js";

/** Both service names of the wire contract, one handler: older agents dial the first, newer the second. */
export const HEARTBEAT_PATHS: ReadonlySet<string> = new Set(
  [AgentCallback, NewAgentCallback].map((s) => `/${s.typeName}/${s.method.heartbeat.name}`),
);

export interface AgentCallbackDeps {
  queue: HeartbeatQueue;
  logger: Logger;
  /** Largest request an agent may send, in bytes. */
  maxRequestBytes: number;
  /** Interval suggested to agents (0: none unless a budget paces the fleet). */
  baseIntervalMs: number;
  /** Told of every finished call with the status the caller actually received. */
  observe: (code: Code, seconds: number) => void;
  /** Told why the database refused a heartbeat (the caller hears UNAUTHENTICATED for all). */
  onRefusal?: (refusal: Refusal) => void;
  /** Told of every key an enrollment CA admitted. */
  onEnrolled?: () => void;
}

// One answer for every authentication failure after the transport check, so
// that a caller cannot tell an unknown machine from a wrong key.
const NOT_REGISTERED = "machine unknown or public key not registered for it";
const DATABASE_UNAVAILABLE = "database unavailable, try again later";
/** A call whose request body does not arrive within this is answered DEADLINE_EXCEEDED. */
export const BODY_TIMEOUT_MS = 30_000;

const INSTALLATION_REQUEST_FIELD = HeartbeatResponseSchema.field.installationRequest.number;
const SUGGESTED_INTERVAL_FIELD = HeartbeatResponseSchema.field.suggestedInterval.number;

/**
 * The serialized HeartbeatResponse. The installation request is forwarded as
 * the bytes the operator stored, not decoded and re-encoded.
 */
function encodeResponse(installationRequest: Uint8Array | null, intervalMs: number): Uint8Array {
  const w = new BinaryWriter();
  if (installationRequest) w.tag(INSTALLATION_REQUEST_FIELD, WireType.LengthDelimited).bytes(installationRequest);
  if (intervalMs > 0) w.tag(SUGGESTED_INTERVAL_FIELD, WireType.LengthDelimited).bytes(toBinary(DurationSchema, durationFromMs(intervalMs)));
  return w.finish();
}

/** Heartbeat: read, validate, admit, queue for group commit, answer. */
export function heartbeatHandler(deps: AgentCallbackDeps): AgentCallHandler {
  const { queue, logger, observe } = deps;

  const gone = (call: AgentCall): Code => (call.deadline !== undefined && Date.now() >= call.deadline ? Code.DEADLINE_EXCEEDED : Code.CANCELLED);
  // Metrics count what the caller received: from another listener thread,
  // whether the answer reached its stream is known only once that thread says.
  const finish = (call: AgentCall, code: Code, sent: boolean | Promise<boolean>) => {
    const record = (got: boolean) => observe(got ? code : gone(call), (Date.now() - call.startedAt) / 1000);
    if (typeof sent === "boolean") record(sent);
    else void sent.then(record);
  };

  const serve = async (call: AgentCall): Promise<void> => {
    const { connection } = call;
    if (call.deadline !== undefined && Date.now() >= call.deadline) throw new WireStatus(Code.DEADLINE_EXCEEDED, "deadline exceeded on arrival");
    // The body must come within the caller's deadline, and never later than BODY_TIMEOUT_MS.
    const bodyBy = Math.min(call.deadline ?? Infinity, Date.now() + BODY_TIMEOUT_MS);
    // Admission first: a refused call costs its headers only (the body is
    // discarded unread). A call from another listener thread was read there
    // first (agent-listener-threads.ts), within --agent-max-request-bytes.
    const refusal = queue.admit();
    if (refusal) {
      call.discardBody();
      throw refusal;
    }
    const body = await call.readMessage(deps.maxRequestBytes, bodyBy - Date.now());
    const parsed = parseHeartbeatRequest(body);
    const live = () => call.isOpen() && (call.deadline === undefined || Date.now() < call.deadline);
    const identity = connection.identity;
    // A certificate that names this machine and chains to an enrollment CA:
    // the heartbeat may admit the key, until one was answered OK on this connection.
    const claim = identity.enrollment;
    const enrollment = claim && !connection.enrolled && claim.machineId === parsed.machineId ? { ca: claim.ca } : undefined;
    const result = await queue.submit({ ...parsed, publicKey: identity.publicKey, ...(enrollment && { enrollment }) }, live);
    if (result === undefined) {
      // The caller's deadline passed (or it left) before its heartbeat was
      // written: nothing was written, and a caller still listening hears so.
      throw new WireStatus(Code.DEADLINE_EXCEEDED, "deadline exceeded before the heartbeat was written");
    }
    if (!result.authenticated) {
      deps.onRefusal?.(result.refusal);
      logger.warn(
        { peer: connection.remoteAddress, machineId: parsed.machineId, keyFingerprint: identity.keyFingerprint, refusal: result.refusal },
        "agent refused: not registered",
      );
      throw new WireStatus(Code.UNAUTHENTICATED, NOT_REGISTERED);
    }
    if (enrollment) {
      connection.enrolled = true;
      if (result.enrolled) deps.onEnrolled?.();
    }
    const response = encodeResponse(result.installationRequest, queue.pacedIntervalMs(deps.baseIntervalMs));
    finish(call, Code.OK, call.respond(response));
  };

  return (call) => {
    serve(call).catch((error: unknown) => {
      let status: WireStatus;
      if (error instanceof WireStatus) {
        status = error;
      } else if (error instanceof DatabaseUnavailableError) {
        status = new WireStatus(Code.UNAVAILABLE, DATABASE_UNAVAILABLE, { "grpc-retry-pushback-ms": String(500 + Math.round(Math.random() * 1000)) });
      } else {
        logger.error({ err: error }, "bug: unexpected error in Heartbeat");
        status = new WireStatus(Code.INTERNAL, "internal error");
      }
      finish(call, status.code, call.fail(status));
    });
  };
}
