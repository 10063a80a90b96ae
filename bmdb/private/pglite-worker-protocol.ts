// The messages between the main thread and the PGlite worker. Everything
// crosses by structured clone, which carries bigint, Date and Uint8Array:
// parameters and rows need no encoding of their own.

export interface WorkerStatement {
  sql: string;
  params: readonly unknown[];
}

/** A transaction around a batch: BEGIN with these settings, COMMIT, or ROLLBACK on the first error. */
export interface BatchTransaction {
  isolationLevel?: string;
  accessMode?: string;
}

export type WorkerRequest =
  | { kind: "query"; id: number; statement: WorkerStatement }
  | { kind: "batch"; id: number; statements: WorkerStatement[]; transaction: BatchTransaction | null }
  | { kind: "listen"; id: number; channel: string }
  | { kind: "unlisten"; id: number; channel: string }
  | { kind: "close"; id: number };

export interface WorkerResult {
  rows: unknown[];
  affectedRows: number | undefined;
}

/** An Error's message plus the fields PGlite's DatabaseError carries (code, detail...). */
export interface WorkerError {
  name: string;
  message: string;
  fields: { [key: string]: string | number };
  /** Which statement of a batch failed. */
  statementIndex?: number;
}

export type WorkerReply =
  | { kind: "ready" }
  | { kind: "init-failed"; error: WorkerError }
  | { kind: "done"; id: number; results: WorkerResult[] }
  | { kind: "failed"; id: number; error: WorkerError }
  | { kind: "notification"; channel: string; payload: string };

export interface WorkerData {
  /** The on-disk data directory; undefined: in memory. */
  dataDir: string | undefined;
}

export function serializeError(error: unknown, statementIndex?: number): WorkerError {
  const fields: { [key: string]: string | number } = {};
  if (error !== null && typeof error === "object") {
    for (const [k, v] of Object.entries(error)) {
      if ((typeof v === "string" || typeof v === "number") && k !== "message" && k !== "stack") fields[k] = v;
    }
  }
  return {
    name: error instanceof Error ? error.name : "Error",
    message: error instanceof Error ? error.message : String(error),
    fields,
    ...(statementIndex !== undefined && { statementIndex }),
  };
}
