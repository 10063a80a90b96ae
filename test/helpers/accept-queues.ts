import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * The accept queue (backlog) of each socket listening on a TCP port, as the
 * kernel reports it (`ss`: Send-Q of a listening socket), one per socket of
 * a SO_REUSEPORT group.
 */
export function acceptQueues(port: number): number[] {
  const out = execFileSync("ss", ["-ltnH", `sport = :${port}`], { encoding: "utf8" });
  return out
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("LISTEN"))
    .map((l) => Number(l.trim().split(/\s+/)[2]));
}

/**
 * The deepest accept queue a listener can have here: what it asks for,
 * capped at net.core.somaxconn. Where somaxconn is 511 or less, Node's
 * default (511) reaches it too, and a test of the backlog proves nothing.
 */
export function deepestAcceptQueue(asked = 65535): number {
  return Math.min(asked, Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim()));
}
