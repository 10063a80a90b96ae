import { closeSync, existsSync, openSync, readdirSync, readlinkSync, readSync } from "node:fs";
import { basename, join } from "node:path";

/**
 * Where the hardware is read from. Configurable so that tests run on fixture
 * trees copied from real machines instead of the machine running the tests.
 */
export interface Roots {
  proc: string;
  sys: string;
}

export const SYSTEM_ROOTS: Roots = { proc: "/proc", sys: "/sys" };

/** Collects what could not be read; a report with warnings beats no report. */
export class Warnings {
  readonly list: string[] = [];
  add(message: string): void {
    this.list.push(message);
  }
}

/** A sysfs attribute is at most a page; this leaves room and bounds a hostile file. */
export const MAX_ATTRIBUTE_BYTES = 64 * 1024;
/** /proc/cpuinfo of thousands of threads runs to megabytes. */
export const MAX_TABLE_BYTES = 16 * 1024 * 1024;

/**
 * At most max bytes of a file, read incrementally: procfs and sysfs files
 * report sizes of 0 or 4096 whatever they hold. Undefined if it is missing or
 * unreadable.
 */
export function readBytes(path: string, max = MAX_TABLE_BYTES): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return undefined;
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    while (total < max) {
      const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, max - total));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
    }
    return Buffer.concat(chunks, total);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * The trimmed text of a file (invalid UTF-8 replaced by U+FFFD), at most max
 * bytes of it, or undefined if it is missing or unreadable. Not yet safe to
 * send: collectHardwareReport cleans every string of the report at the end.
 */
export function readText(path: string, max = MAX_ATTRIBUTE_BYTES): string | undefined {
  return readBytes(path, max)?.toString("utf8").trim();
}

export function readInt(path: string): number | undefined {
  const t = readText(path);
  if (t === undefined || !/^-?\d+$/.test(t)) return undefined;
  return Number(t);
}

export function listDir(path: string): string[] {
  try {
    return readdirSync(path).sort();
  } catch {
    return [];
  }
}

/** The last path element of a symlink's target (a driver's name, say). */
export function linkName(path: string): string | undefined {
  try {
    return basename(readlinkSync(path));
  } catch {
    return undefined;
  }
}

export function exists(path: string): boolean {
  return existsSync(path);
}

export { join };
