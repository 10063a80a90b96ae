import type { Migration, MigrationProvider } from "kysely";
import * as m0001 from "./0001_initial.js";
import * as m0002 from "./0002_operator_views.js";
import * as m0003 from "./0003_heartbeat_hot_path.js";
import * as m0004 from "./0004_heartbeat_batch_function.js";
import * as m0005 from "./0005_search_prefixes.js";
import * as m0006 from "./0006_hardware_report_totals.js";
import * as m0007 from "./0007_admission.js";
import * as m0008 from "./0008_heartbeat_in_agent_row.js";

// Migrations are listed here rather than discovered on disk so the compiled
// server carries them and the order is explicit. Append, never edit.
const migrations: Record<string, Migration> = {
  "0001_initial": m0001,
  "0002_operator_views": m0002,
  "0003_heartbeat_hot_path": m0003,
  "0004_heartbeat_batch_function": m0004,
  "0005_search_prefixes": m0005,
  "0006_hardware_report_totals": m0006,
  "0007_admission": m0007,
  "0008_heartbeat_in_agent_row": m0008,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
