// `npm start`: build only when a source changed since the last build, then run
// the server on the embedded default (PGlite on disk) with development
// certificates. A warm start skips tsc entirely (it took ~11 s of a 15 s start);
// a changed tree is rebuilt incrementally (tsc --incremental).
import { execFileSync, spawn } from "node:child_process";
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// Written after every build this script runs: tsc leaves its own build info
// untouched when a change (a touch, a comment) leaves the output the same.
const stamp = join(root, "dist", ".start-built");
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

const built = newest(stamp);
if (built === 0 || SOURCES.some((s) => newest(join(root, s)) > built)) {
  process.stderr.write("building (tsc --incremental)…\n");
  execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
}

const server = spawn(
  process.execPath,
  [join(root, "dist", "cmd", "bmaas-server.js"), "--dev-certs", ".bmaas-dev/certs", "--database-url", ".bmaas-dev/db", ...process.argv.slice(2)],
  { cwd: root, stdio: "inherit" },
);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.kill(signal));
server.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
