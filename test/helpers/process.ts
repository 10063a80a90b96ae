import { spawn } from "node:child_process";
import { join } from "node:path";
import { SERVER_NODE_FLAGS } from "../../cmd/server-node-flags.js";

// The commands run as real processes: the built ones (dist/cmd/*.js), which
// the suite's global setup (test/global-setup.ts) brings up to date first.

export const ROOT = join(import.meta.dirname, "..", "..");

/** A command of cmd/ as built. */
export type CommandName = "bmctl" | "bmaas-server" | "bmaas-agent";

/** node and the arguments that run command with args (bmaas-server with the flags of its shebang). */
export function commandLine(command: CommandName, args: string[]): [string, string[]] {
  const flags = command === "bmaas-server" ? SERVER_NODE_FLAGS : [];
  return [process.execPath, [...flags, join(ROOT, "dist", "cmd", `${command}.js`), ...args]];
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs command with args and waits for it to exit. */
export function runCommand(command: CommandName, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(...commandLine(command, args), { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
