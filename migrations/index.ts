import type { Migration, MigrationProvider } from "kysely";
import * as m0001 from "./0001_initial.js";
import * as m0002 from "./0002_operator_views.js";

// Migrations are listed here rather than discovered on disk so the compiled
// server carries them and the order is explicit. Append, never edit.
const migrations: Record<string, Migration> = {
  "0001_initial": m0001,
  "0002_operator_views": m0002,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
