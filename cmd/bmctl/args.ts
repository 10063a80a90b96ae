import { InvalidArgumentError } from "commander";
import { validate as isUuid } from "uuid";
import { numberArg } from "../../lib/flags.js";

// Parsers of bmctl's arguments and option values. Commander calls them while
// parsing, so a malformed value fails before anything is dialled.

/** Accepts a raw 32-byte Ed25519 public key as hex or (url-safe) base64. */
export function parsePublicKey(text: string): Uint8Array {
  const t = text.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : /^[A-Za-z0-9+/_-]{43}=?$/.test(t) ? Buffer.from(t, "base64") : undefined;
  if (!bytes || bytes.length !== 32) {
    throw new InvalidArgumentError("want a 32-byte Ed25519 public key as 64 hex digits or base64");
  }
  return bytes;
}

/** Checked before dialling, so a typo gets its own message. */
export function machineId(text: string): string {
  if (!isUuid(text)) throw new InvalidArgumentError(`"${text}" is not a machine ID (a UUID like 9b4b8487-6a66-4ca3-b732-0f789f43f1a8)`);
  return text.toLowerCase();
}

/** An installation generation: a positive int64. */
export function generation(text: string): bigint {
  if (!/^\d+$/.test(text) || BigInt(text) <= 0n || BigInt(text) > 2n ** 63n - 1n) {
    throw new InvalidArgumentError("must be a positive 64-bit integer");
  }
  return BigInt(text);
}

/** Page sizes: the server serves at most 1000 per page. */
export const pageSize = numberArg({ min: 1, max: 1000, integer: true });
