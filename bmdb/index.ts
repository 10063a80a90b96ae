// The machine database: what server/ may use of bmdb.
export { Bmdb } from "./bmdb.js";
export { isInstallationPending } from "./pending.js";
export type { BatchHeartbeat, BatchOutcome } from "./heartbeat-batch.js";
export type { BmdbOptions, Clock, CreateMachineInput, HeartbeatInput, HeartbeatResult, HistoryPage, MachineView } from "./bmdb.js";
export type { Database, JsonValue } from "./database.js";
export { AgentNotRegisteredError, BmdbError, DatabaseUnavailableError, MachineNotFoundError, NotProvidedError, ProviderIdTakenError } from "./errors.js";
export type { EventDelivery, EventListener, MachineEvent, MachineEventKind } from "./events.js";
export { DEFAULT_THRESHOLDS } from "./fleet.js";
export type { FleetCounters, FleetStats, FleetThresholds, HardwareTotals, HeartbeatState, ListFilter, MachineSummary } from "./fleet.js";
export type { HeartbeatAgeCount } from "./heartbeat-ages.js";
export { migrate } from "./migrate.js";
export { openBmdb, parseDatabaseUrl } from "./open.js";
export type { Backend, OpenOptions } from "./open.js";
export type { TransactionStats } from "./private/transact.js";
export type { DatabaseState } from "./private/breaker.js";
export {
  AdmissionRequestNotFoundError,
  AmbiguousFingerprintError,
  CurrentKeyError,
  DEFAULT_ADMISSION_BOUNDS,
  REFUSALS,
} from "./admission.js";
export type { AdmissionBounds, ExpiredRequest, Refusal } from "./admission.js";
export type { AdmissionCounts, AgentRequestView, RequestCursor, RequestFilter } from "./agent-requests.js";
export type { AdmissionState } from "./database.js";
export type { HardwareMatch } from "./hardware-match.js";
export type { ImportEntry, ImportOutcome, ImportResult } from "./machine-import.js";
