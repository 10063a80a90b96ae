import { validate as isUuid } from "uuid";
import type { ListFilter } from "../../bmdb/index.js";
import { HEARTBEAT_STATE_NAMES } from "../../lib/heartbeat-states.js";

// The machines page's URL: the filters of ListMachines, a search prefix, and
// the keyset cursor (the last machine ID of the previous page), as plain
// query parameters a person can read, bookmark and edit.

/** Bad input from the address bar: answered 400 with this message. */
export class BadRequest extends Error {}

export interface ListQuery {
  filter: ListFilter;
  pageSize: number;
  after: string | undefined;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function yesNo(params: URLSearchParams, name: string): boolean | undefined {
  const v = params.get(name);
  if (v === null || v === "") return undefined;
  if (v === "yes") return true;
  if (v === "no") return false;
  throw new BadRequest(`${name} must be "yes" or "no", not "${v}"`);
}

export function parseListQuery(params: URLSearchParams): ListQuery {
  const filter: ListFilter = {};
  const hb = params.get("heartbeat") ?? "";
  if (hb) {
    const state = HEARTBEAT_STATE_NAMES.find((name) => name === hb);
    if (!state) throw new BadRequest(`heartbeat must be ${HEARTBEAT_STATE_NAMES.slice(0, -1).join(", ")} or ${HEARTBEAT_STATE_NAMES.at(-1)}, not "${hb}"`);
    filter.heartbeat = state;
  }
  const recovery = yesNo(params, "recovery");
  if (recovery !== undefined) filter.needsRecovery = recovery;
  const hw = yesNo(params, "hw");
  if (hw !== undefined) filter.hasHardwareReport = hw;
  const pending = yesNo(params, "pending");
  if (pending !== undefined) filter.pendingInstallation = pending;
  const provider = params.get("provider") ?? "";
  if (provider) filter.provider = provider;
  const q = (params.get("q") ?? "").trim();
  if (q.length > 256) throw new BadRequest("search must be at most 256 characters");
  if (q) filter.search = q;
  const sizeText = params.get("size") ?? "";
  const pageSize = sizeText === "" ? DEFAULT_PAGE_SIZE : Number(sizeText);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) throw new BadRequest(`size must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
  const after = params.get("after") || undefined;
  if (after !== undefined && !isUuid(after)) throw new BadRequest("after must be a machine ID (the last one of the previous page)");
  return { filter, pageSize, after: after?.toLowerCase() };
}

/** The query string of q with some parameters changed ("" or undefined removes one). */
export function withParams(params: URLSearchParams, changes: Record<string, string | undefined>): string {
  const next = new URLSearchParams(params);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === "") next.delete(k);
    else next.set(k, v);
  }
  const s = next.toString();
  return s ? `?${s}` : "";
}
