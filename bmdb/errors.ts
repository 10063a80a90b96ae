// Domain errors of the machine database. The server maps them to gRPC status
// codes at its edge; bmdb itself knows nothing of gRPC.

export class BmdbError extends Error {}

/** The named machine does not exist. */
export class MachineNotFoundError extends BmdbError {
  constructor(readonly machineId: string) {
    super(`machine ${machineId} not found`);
    this.name = "MachineNotFoundError";
  }
}

/** Another machine already has this (provider, provider_id). */
export class ProviderIdTakenError extends BmdbError {
  constructor(readonly provider: string, readonly providerId: string) {
    super(`provider ${provider} already has a machine with id ${providerId}`);
    this.name = "ProviderIdTakenError";
  }
}

/** The machine has no registered agent (nothing to revoke). */
export class AgentNotRegisteredError extends BmdbError {
  constructor(readonly machineId: string) {
    super(`machine ${machineId} has no registered agent`);
    this.name = "AgentNotRegisteredError";
  }
}

/** The machine was not supplied by a provider, so it has no provider data. */
export class NotProvidedError extends BmdbError {
  constructor(readonly machineId: string) {
    super(`machine ${machineId} has no provider`);
    this.name = "NotProvidedError";
  }
}

/**
 * The database could not serve the call: the connection was lost or refused,
 * the database is known to be down (the breaker is open), or serialization
 * failures went on past the allowed attempts. Retrying later can succeed.
 * Any other failure (a bug, a constraint we did not expect) is not wrapped in
 * this. The message is safe to log, not to show to untrusted callers.
 */
export class DatabaseUnavailableError extends BmdbError {
  constructor(readonly operation: string, cause: unknown) {
    super(`${operation}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "DatabaseUnavailableError";
  }
}
