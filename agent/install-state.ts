import { randomBytes } from "node:crypto";
import { closeSync, constants, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
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
      // Not through a symlink either: the state is a plain file this agent wrote.
      const fd = openSync(this.path, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        text = readFileSync(fd, "utf8");
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      if ((e as NodeJS.ErrnoException).code === "ELOOP") throw new Error(`${this.path} is a symbolic link: refusing to read the install state through it`);
      throw e;
    }
    const s = JSON.parse(text) as Stored;
    return { generation: BigInt(s.generation), status: s.status, reported: s.reported, ...(s.error !== undefined && { error: s.error }) };
  }

  /**
   * Atomic and durable: a crash leaves the old or the new state, never half.
   * The temporary file has a random name and is created exclusively without
   * following symlinks (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600): whoever can
   * write to the state directory cannot make this root process write through
   * a planted link. rename() replaces a link at the final path itself, never
   * its target.
   */
  write(state: InstallState): void {
    const dir = dirname(this.path);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stored: Stored = { generation: state.generation.toString(), status: state.status, reported: state.reported, ...(state.error !== undefined && { error: state.error }) };
    const tmp = join(dir, `.install-state.${randomBytes(8).toString("hex")}.tmp`);
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      try {
        writeSync(fd, JSON.stringify(stored) + "\n");
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        // already renamed or gone
      }
      throw e;
    }
    const dirFd = openSync(dir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}
