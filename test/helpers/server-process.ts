import { spawn, type ChildProcess } from "node:child_process";
import { commandLine, ROOT } from "./process.js";

/** bmaas-server as a real process (the built one), started by startServerProcess. */
export interface ServerProcess {
  proc: ChildProcess;
  publicAddress: string;
  internalAddress: string;
  /** The metrics listener, when one was asked for. */
  metricsAddress?: string;
  /** The web view's URL, when it runs. */
  webUrl?: string;
  /** Resolves with the exit code (null when ended by a signal). */
  exited: Promise<number | null>;
  readonly alive: boolean;
  /** JSON log lines (stdout) so far, parsed; other lines are skipped. */
  logs(): Array<{ [key: string]: unknown }>;
  /** Everything on stdout so far (JSON logs, the dev banner). */
  stdout(): string;
  /** Everything on stderr so far. */
  stderr(): string;
  /** SIGKILL if still running, and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

// Servers still running when the test process exits (a test that threw
// before its afterAll, a hook that timed out) are killed on the way out, so
// that no bmaas-server outlives the suite that started it.
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

/**
 * Starts bmaas-server (dist/cmd/bmaas-server.js) with args and waits for its "listening" log
 * line (pino JSON on stdout: {"msg":"listening","public":…,"internal":…}).
 * Rejects if it exits first or does not listen within timeoutMs.
 */
export function startServerProcess(args: string[], timeoutMs = 60_000): Promise<ServerProcess> {
  const proc = spawn(...commandLine("bmaas-server", args), { cwd: ROOT });
  live.add(proc);
  const exited = new Promise<number | null>((r) =>
    proc.on("exit", (code) => {
      live.delete(proc);
      r(code);
    }),
  );
  const logs: Array<{ [key: string]: unknown }> = [];
  let partial = "";
  let out = "";
  let err = "";
  proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`bmaas-server did not listen within ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    let listening = false;
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      partial += d.toString();
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.startsWith("{")) continue;
        let log: { [key: string]: unknown };
        try {
          log = JSON.parse(line) as { [key: string]: unknown };
        } catch {
          continue;
        }
        logs.push(log);
        if (!listening && log.msg === "listening" && typeof log.public === "string" && typeof log.internal === "string") {
          listening = true;
          clearTimeout(timer);
          resolve({
            proc,
            publicAddress: log.public,
            internalAddress: log.internal,
            ...(typeof log.metrics === "string" && { metricsAddress: log.metrics }),
            ...(typeof log.web === "string" && { webUrl: log.web }),
            exited,
            get alive() {
              return proc.exitCode === null && proc.signalCode === null;
            },
            logs: () => logs,
            stdout: () => out,
            stderr: () => err,
            async kill(signal: NodeJS.Signals = "SIGKILL") {
              if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
              await exited;
            },
          });
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      if (!listening) reject(new Error(`bmaas-server exited with ${code} before listening: ${err}`));
    });
  });
}
