import * as grpc from "@grpc/grpc-js";
import type { DescMethod } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  AdmissionRequestNotFoundError,
  AmbiguousFingerprintError,
  CurrentKeyError,
  AgentNotRegisteredError,
  DatabaseUnavailableError,
  MachineNotFoundError,
  NotProvidedError,
  ProviderIdTakenError,
} from "../bmdb/index.js";

/** An error whose gRPC status the handler chose. */
export class RpcError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = "RpcError";
  }
}

/**
 * The one place where errors become gRPC statuses. Domain errors of bmdb get
 * the code a user would expect; database failures become UNAVAILABLE and
 * anything else INTERNAL, both with a message that reveals no internals (the
 * details go to the log).
 */
export function statusMapper(logger: Logger) {
  return (error: unknown, method: DescMethod): Partial<grpc.StatusObject> => {
    if (error instanceof RpcError) return { code: error.code, details: error.message };
    if (error instanceof AdmissionRequestNotFoundError) return { code: grpc.status.NOT_FOUND, details: error.message };
    if (error instanceof AmbiguousFingerprintError) return { code: grpc.status.INVALID_ARGUMENT, details: error.message };
    if (error instanceof CurrentKeyError) return { code: grpc.status.FAILED_PRECONDITION, details: error.message };
    if (error instanceof MachineNotFoundError) return { code: grpc.status.NOT_FOUND, details: error.message };
    if (error instanceof ProviderIdTakenError) return { code: grpc.status.ALREADY_EXISTS, details: error.message };
    if (error instanceof AgentNotRegisteredError || error instanceof NotProvidedError) {
      return { code: grpc.status.FAILED_PRECONDITION, details: error.message };
    }
    if (error instanceof DatabaseUnavailableError) {
      logger.error({ err: error, method: method.name }, "database failed");
      return { code: grpc.status.UNAVAILABLE, details: "database unavailable, try again later" };
    }
    logger.error({ err: error, method: method.name }, "unexpected error in handler");
    return { code: grpc.status.INTERNAL, details: "internal error" };
  };
}
