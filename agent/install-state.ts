import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";

/**
 * What the agent remembers about installations across restarts, so that a
 * generation never runs twice: it is written before the installer starts
 * ("running"), again with the result, and once the report was accepted.
 */
export interface InstallState {
  generation: bigint;
  status: "running" | "succeeded" | "failed";
  error?: string;
  /** The server accepted the report for this generation. */
  reported: boolean;
}

interface Stored {
  generation: string;
  status: InstallState["status"];
  error?: string;
  reported: boolean;
}

export class InstallStateFile {
  readonly path: string;

  constructor(dir: string) {
    this.path = join(dir, "install-state.json");
  }

  read(): InstallState | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    const s = JSON.parse(text) as Stored;
    return { generation: BigInt(s.generation), status: s.status, reported: s.reported, ...(s.error !== undefined && { error: s.error }) };
  }

  /** Atomic and durable: a crash leaves the old or the new state, never half. */
  write(state: InstallState): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const stored: Stored = { generation: state.generation.toString(), status: state.status, reported: state.reported, ...(state.error !== undefined && { error: state.error }) };
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, JSON.stringify(stored) + "\n");
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dirFd = openSync(dirname(this.path), "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}
