/**
 * The pending rule of the reference server: a request is sent while no report
 * exists for its generation, whatever that report's result.
 */
export function isInstallationPending(requestGeneration: bigint | null, reportGeneration: bigint | null): boolean {
  return requestGeneration !== null && requestGeneration !== reportGeneration;
}
