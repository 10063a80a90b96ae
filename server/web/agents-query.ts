import { validate as isUuid } from "uuid";
import type { RequestCursor, RequestFilter } from "../../bmdb/index.js";
import { BadRequest, yesNo } from "./list-query.js";

// The agents page's URL: state (pending by default, or rejected), whether the
// machine already has a key, a provider, and the keyset cursor of
// ListAgentRequests ("MACHINE_FINGERPRINT" of the last row shown).

export const AGENTS_PAGE_SIZE = 100;

export interface AgentsQuery {
  filter: RequestFilter & { state: "pending" | "rejected" };
  after: RequestCursor | undefined;
}

export function parseAgentsQuery(params: URLSearchParams): AgentsQuery {
  const state = params.get("state") || "pending";
  if (state !== "pending" && state !== "rejected") throw new BadRequest(`state must be "pending" or "rejected", not "${state}"`);
  const filter: AgentsQuery["filter"] = { state };
  const rekeyed = yesNo(params, "rekeyed");
  if (rekeyed !== undefined) filter.rekeyed = rekeyed;
  const provider = params.get("provider");
  if (provider) {
    if (provider.length > 256) throw new BadRequest("provider is too long");
    filter.provider = provider;
  }
  return { filter, after: parseCursor(params.get("after")) };
}

export function cursorText(c: RequestCursor): string {
  return `${c.machineId}_${c.keyFingerprint}`;
}

function parseCursor(text: string | null): RequestCursor | undefined {
  if (!text) return undefined;
  const [machineId, keyFingerprint] = text.split("_");
  if (!machineId || !isUuid(machineId) || !keyFingerprint || !/^[0-9a-f]{64}$/.test(keyFingerprint)) {
    throw new BadRequest("after must be the cursor of a previous page");
  }
  return { machineId: machineId.toLowerCase(), keyFingerprint };
}
