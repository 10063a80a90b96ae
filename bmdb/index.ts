// The machine database: what server/ may use of bmdb.
export { Bmdb, isInstallationPending } from "./bmdb.js";
export type { BmdbOptions, Clock, CreateMachineInput, HeartbeatInput, HeartbeatResult, MachineView } from "./bmdb.js";
export type { Database, JsonValue } from "./database.js";
export { BmdbError, DatabaseUnavailableError, MachineNotFoundError, ProviderIdTakenError } from "./errors.js";
export { keyFingerprint } from "./fingerprint.js";
export { migrate } from "./migrate.js";
export { openBmdb, parseDatabaseUrl } from "./open.js";
export type { Backend, OpenOptions } from "./open.js";
export type { TransactionStats } from "./private/transact.js";
export { BmdbConfig, type BmdbFlags } from "./config.js";
