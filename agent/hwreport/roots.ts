import { readFileSync, readdirSync, readlinkSync, existsSync } from "node:fs";
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

/** The trimmed text of a file, or undefined if it is missing or unreadable. */
export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

export function readBytes(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
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
