// Builds dist/ (tsc --incremental) only when a source changed since the last
// build made here: `npm start` and the test suite's global setup (the command
// tests run the built commands) both call it, so a warm start or test run
// skips tsc entirely (~2.5 s even when incremental has nothing to do).
import { execFileSync } from "node:child_process";
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
// Written after every build made here: tsc leaves its own build info
// untouched when a change (a touch, a comment) leaves the output the same.
const STAMP = join(ROOT, "dist", ".built");
const SOURCES = ["cmd", "server", "bmdb", "migrations", "gen", "agent", "lib", "test/bench", "tsconfig.json", "tsconfig.build.json", "package.json"];

/** Newest modification time below path (files only), 0 if it does not exist. */
function newest(path) {
  let st;
  try {
    st = statSync(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  return readdirSync(path).reduce((m, name) => Math.max(m, newest(join(path, name))), st.mtimeMs);
}

/** Runs tsc -p tsconfig.build.json when a source is newer than the last build; true when it built. */
export function buildIfChanged({ log = (line) => process.stderr.write(line) } = {}) {
  const built = newest(STAMP);
  if (built !== 0 && !SOURCES.some((s) => newest(join(ROOT, s)) > built)) return false;
  log("building (tsc --incremental)…\n");
  execFileSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], { cwd: ROOT, stdio: "inherit" });
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
  return true;
}
