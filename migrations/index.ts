import type { Migration, MigrationProvider } from "kysely";
import * as m0001 from "./0001_initial.js";

// Migrations are listed here rather than discovered on disk so the compiled
// server carries them and the order is explicit. Append, never edit.
const migrations: Record<string, Migration> = {
  "0001_initial": m0001,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
