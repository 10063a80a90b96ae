import { spawn } from "node:child_process";
import { join } from "node:path";

// The commands run as real processes, through tsx so that tests need no build.

export const ROOT = join(import.meta.dirname, "..", "..");

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs cmd/<script> with args and waits for it to exit. */
export function runScript(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--import", "tsx", join(ROOT, "cmd", script), ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
