import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

// A PostgreSQL cluster of the test's own: initdb in a temporary directory,
// an ephemeral loopback port, a socket directory of its own, so that a test
// can stop and start it (which it must not do to the shared CI server).
// Run as the postgres user when we are root (CI), as ourselves otherwise.

/** The bin directory of the newest PostgreSQL installed under /usr/lib/postgresql, if any. */
export function postgresBinDir(): string | undefined {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, "bin", "initdb")) && existsSync(join(base, v, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] && join(base, versions[0], "bin");
}

/** A free loopback port (free when asked; the race with other processes is accepted). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface PrivatePostgres {
  port: number;
  /** postgres://postgres@127.0.0.1:port/db */
  url(db?: string): string;
  readonly running: boolean;
  /** pg_ctl start -w: resolves once it accepts connections. */
  start(): Promise<void>;
  /** pg_ctl stop -w -m mode. */
  stop(mode?: "smart" | "fast" | "immediate"): Promise<void>;
  /** The server log so far (for failure messages). */
  log(): string;
  /** Stops it (immediately) if running and removes its directory. */
  destroy(): Promise<void>;
}

const asRoot = process.getuid?.() === 0;

function command(bin: string, args: string[]): [string, string[]] {
  return asRoot ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
}

function run(bin: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const [cmd, argv] = command(bin, args);
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(" ")}: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

// Clusters still running when the test process exits (a test that threw
// before its afterAll, a timeout) are stopped on the way out.
const live = new Set<() => void>();
process.once("exit", () => {
  for (const stop of live) stop();
});

/** initdb + start a private cluster. Throws if PostgreSQL is not installed. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error("no PostgreSQL under /usr/lib/postgresql");
  const dir = mkdtempSync(join(tmpdir(), "bmaas-pg-"));
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, "data");
  const logFile = join(dir, "postgres.log");
  const port = await freePort();
  const pgCtl = join(bin, "pg_ctl");
  await run(join(bin, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    "-c listen_addresses=127.0.0.1",
    // Data survives a clean stop either way; the tests never crash the
    // machine, so skip the fsyncs that would only slow them down.
    "-c fsync=off",
    "-c full_page_writes=off",
    "-c max_connections=100",
  ].join(" ");
  let running = false;
  const stopNow = () => {
    try {
      const [cmd, argv] = command(pgCtl, ["-D", data, "-m", "immediate", "-w", "stop"]);
      execFileSync(cmd, argv, { stdio: "ignore", timeout: 30_000 });
    } catch {
      // Not running.
    }
  };

  const pgdb: PrivatePostgres = {
    port,
    url: (db = "postgres") => `postgres://postgres@127.0.0.1:${port}/${db}`,
    get running() {
      return running;
    },
    async start() {
      await run(pgCtl, ["-D", data, "-l", logFile, "-o", options, "-w", "-t", "60", "start"]);
      running = true;
      live.add(stopNow);
    },
    async stop(mode = "fast") {
      await run(pgCtl, ["-D", data, "-m", mode, "-w", "-t", "60", "stop"]);
      running = false;
      live.delete(stopNow);
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
    async destroy() {
      if (running) stopNow();
      running = false;
      live.delete(stopNow);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await pgdb.start();
  } catch (e) {
    await pgdb.destroy();
    throw e;
  }
  return pgdb;
}
