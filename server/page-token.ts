import * as grpc from "@grpc/grpc-js";
import { RpcError } from "./rpc-error.js";

// Page tokens are opaque to clients: base64url JSON naming where the next page
// starts. They carry no secrets; a forged token only moves the cursor.

export function encodePageToken(value: Record<string, string>): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

export function decodePageToken(token: string, keys: string[]): Record<string, string> | undefined {
  if (!token) return undefined;
  try {
    const v = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Record<string, unknown>;
    if (keys.every((k) => typeof v[k] === "string")) return v as Record<string, string>;
  } catch {
    // fall through
  }
  throw new RpcError(grpc.status.INVALID_ARGUMENT, "invalid page_token: pass next_page_token of the previous page unchanged");
}

/** A page size within [1, max], defaulting when unset (0). */
export function pageSize(requested: number, fallback: number, max: number): number {
  if (requested < 0) throw new RpcError(grpc.status.INVALID_ARGUMENT, "page_size must not be negative");
  return requested === 0 ? fallback : Math.min(requested, max);
}
