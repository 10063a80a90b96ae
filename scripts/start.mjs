// `npm start`: build only when a source changed since the last build, then run
// the server on the embedded default (PGlite on disk) with development
// certificates. A warm start skips tsc entirely (it took ~11 s of a 15 s start);
// a changed tree is rebuilt incrementally (tsc --incremental).
import { spawn } from "node:child_process";
import { join } from "node:path";
import { buildIfChanged, ROOT } from "./build-if-changed.mjs";

buildIfChanged();
// The flags bmaas-server's shebang runs node with (cmd/server-node-flags.ts).
const { SERVER_NODE_FLAGS } = await import(join(ROOT, "dist", "cmd", "server-node-flags.js"));

const server = spawn(
  process.execPath,
  [...SERVER_NODE_FLAGS, join(ROOT, "dist", "cmd", "bmaas-server.js"), "--dev-certs", ".bmaas-dev/certs", "--database-url", ".bmaas-dev/db", ...process.argv.slice(2)],
  { cwd: ROOT, stdio: "inherit" },
);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.kill(signal));
server.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
