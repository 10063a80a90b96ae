import { spawn } from "node:child_process";

export type CommandResult = { ok: true } | { ok: false; error: string };

/**
 * Runs command through /bin/sh with input on stdin, killing it and its
 * children after timeoutMs. The last line of its stderr explains a failure.
 */
export function runCommand(command: string, input: string, timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    // Its own process group, so a timeout kills everything the command started.
    const child = spawn("/bin/sh", ["-c", command], { stdio: ["pipe", "ignore", "pipe"], detached: true });
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, timeoutMs);
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4096);
    });
    child.stdin.on("error", () => {}); // a command that does not read its input is fine
    child.stdin.end(input);
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ ok: false, error: `cannot run ${command}: ${e.message}` });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return resolve({ ok: false, error: `${command}: timed out after ${timeoutMs / 1000}s` });
      if (code === 0) return resolve({ ok: true });
      const last = stderr.trim().split("\n").pop() ?? "";
      resolve({ ok: false, error: `${command}: ${signal ? `killed by ${signal}` : `exit status ${code}`}${last ? `: ${last}` : ""}` });
    });
  });
}
