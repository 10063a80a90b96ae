import type { ColumnType, Generated, Insertable, Selectable } from "kysely";

// The single typed truth of the machine database schema. Every table but
// machine_history is keyed by machine_id and holds at most one tag of its kind
// per machine (the tag model of the system we re-create). Migrations in
// migrations/ must produce exactly this shape.

/** A timestamptz column: read as Date, written as Date. */
type Timestamp = ColumnType<Date, Date | undefined, Date>;

/** A JSON column: read as parsed JSON, written as a JSON string. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
type Json = ColumnType<JsonValue, string, string>;

export interface MachinesTable {
  machine_id: string;
  created_at: Generated<Date>;
}

export interface MachineProvidedTable {
  machine_id: string;
  provider: string;
  provider_id: string;
  provider_status: string | null;
  provider_address: string | null;
  provider_location: string | null;
}

export interface MachineAgentStartedTable {
  machine_id: string;
  agent_started_at: Timestamp;
  agent_public_key: Uint8Array;
  /** How the key was admitted: registered ahead by an operator, or accepted when it asked. */
  admission: ColumnType<AdmissionState, AdmissionState | undefined, AdmissionState>;
  /** Who or what decided: an operator's certificate name, "import", or an enrollment CA. */
  admitted_by: ColumnType<string | null, string | null | undefined, string | null>;
  /**
   * The agent's last heartbeat, null until its first. Kept in the agent's row
   * so that a heartbeat is one lookup (migrations/0008).
   */
  agent_heartbeat_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /** Set once by the stale sweeper, cleared by the next heartbeat. */
  stale: Generated<boolean>;
  /** Written by each heartbeat: the one before it, and its stale flag. */
  previous_heartbeat_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  previous_stale: Generated<boolean>;
}

export type AdmissionState = "preauthorized" | "accepted";

/** A key that asked to be admitted (pending) or was refused for good (rejected); at most one row per (machine, key). */
export interface MachineAgentRequestTable {
  machine_id: string;
  agent_public_key: Uint8Array;
  key_fingerprint: string;
  state: "pending" | "rejected";
  first_seen_at: Timestamp;
  last_seen_at: Timestamp;
  attempts: ColumnType<bigint, bigint | undefined, bigint>;
  /** The last hardware report the refused agent carried, if any. */
  hardware_report_raw: Uint8Array | null;
  hardware_report_json: ColumnType<JsonValue | null, string | null, string | null>;
  decided_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  decided_by: string | null;
  reason: string | null;
}

export interface MachineHardwareReportTable {
  machine_id: string;
  /** The serialized AgentHardwareReport exactly as the agent sent it. */
  hardware_report_raw: Uint8Array;
  /** Decoded view for operators; raw stays the truth. */
  hardware_report_json: Json;
  /** Hardware threads over every CPU package: what fleet stats sum (written with the report). */
  cpu_threads: ColumnType<bigint, bigint | number, bigint | number>;
  /** Installed memory, numeric(20,0) (a uint64 of the report), read as its decimal text. */
  memory_bytes: ColumnType<string, string, string>;
  reported_at: Timestamp;
}

export interface MachineInstallationRequestTable {
  machine_id: string;
  generation: ColumnType<bigint, bigint, bigint>;
  /** A serialized OSInstallationRequest, sent to the agent as is. */
  installation_request_raw: Uint8Array;
  requested_at: Timestamp;
}

export interface MachineInstallationReportTable {
  machine_id: string;
  generation: ColumnType<bigint, bigint, bigint>;
  result: "success" | "error";
  error_message: string | null;
  /** The serialized OSInstallationReport exactly as the agent sent it. */
  installation_report_raw: Uint8Array;
  reported_at: Timestamp;
}

export interface MachineHistoryTable {
  /** UUIDv7: time-ordered, so newest-first is an index scan. */
  event_id: string;
  /** Deliberately not a foreign key: history outlives the machine. */
  machine_id: string;
  occurred_at: Timestamp;
  event: string;
  details: Json;
}

export interface Database {
  machines: MachinesTable;
  machine_provided: MachineProvidedTable;
  machine_agent_started: MachineAgentStartedTable;
  machine_hardware_report: MachineHardwareReportTable;
  machine_installation_request: MachineInstallationRequestTable;
  machine_installation_report: MachineInstallationReportTable;
  machine_history: MachineHistoryTable;
  machine_agent_request: MachineAgentRequestTable;
}

export type MachineRow = Selectable<MachinesTable>;
export type HistoryInsert = Insertable<MachineHistoryTable>;
