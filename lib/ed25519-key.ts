import * as ed from "@noble/ed25519";

/**
 * Why key is not a usable raw Ed25519 public key, or undefined when it is.
 * Shared by the operator API and bmctl, so that a typo fails before anything
 * is written, never at the agent.
 */
export function ed25519KeyProblem(key: Uint8Array, options: { torsionCheck?: boolean } = {}): string | undefined {
  if (key.length !== 32) return `public_key must be 32 bytes (raw Ed25519), got ${key.length}`;
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(key);
  } catch {
    return "public_key is not a valid Ed25519 public key";
  }
  // Small-order points (the all-zero key among them) verify forged signatures;
  // no honest key generator produces one.
  if (point.isSmallOrder()) return "public_key is not a valid Ed25519 public key (small order)";
  // A mixed-order key (a torsion component added) is no use to anyone but
  // whoever made it, yet no honest generator produces one either. Checking
  // costs a scalar multiplication (~1 ms in JavaScript): done for single keys,
  // skipped by bulk import (100,000 keys would cost minutes of CPU).
  if ((options.torsionCheck ?? true) && !point.isTorsionFree()) return "public_key is not a valid Ed25519 public key (small order)";
  return undefined;
}
