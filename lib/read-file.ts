import { readFileSync } from "node:fs";

/**
 * Reads file, or throws one line naming it: `${label} ${file}: no such file`
 * (Node's own ENOENT text repeats the path with a syscall name), or the
 * reason for any other failure. label says what the file is for, e.g. the
 * flag that named it.
 */
export function readNamedFile(label: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(`${label} ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
}
