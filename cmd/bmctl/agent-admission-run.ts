import { toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { AdmissionState, AgentRequestSchema, type AgentRequest, type ListAgentRequestsRequestSchema } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { HARDWARE_MATCH_NAMES } from "../../lib/display.js";
import { REQUEST_HEAD, requestRows } from "../private/admission-format.js";
import { table } from "../private/format.js";
import { print, type CommandContext } from "./context.js";

// What bmctl agent pending | accept | reject do once they run (loaded then:
// the command tree stays free of grpc-js and protobuf, see imports.test.ts).

export interface PendingOptions {
  machine?: string;
  provider?: string;
  rekeyed?: boolean;
  new?: boolean;
  rejected?: boolean;
  pageSize: number;
  pageToken?: string;
  all?: boolean;
  json?: boolean;
}

export async function listPending({ operator, deadline }: CommandContext, o: PendingOptions): Promise<void> {
  if (o.rekeyed && o.new) throw new Error("--rekeyed and --new exclude each other");
  const filter: MessageInitShape<typeof ListAgentRequestsRequestSchema> = {
    pageSize: o.pageSize,
    state: o.rejected ? AdmissionState.REJECTED : AdmissionState.PENDING,
    ...(o.machine && { machineId: o.machine }),
    ...(o.provider !== undefined && { provider: o.provider }),
    ...(o.rekeyed && { rekeyed: true }),
    ...(o.new && { rekeyed: false }),
  };
  const client = await operator();
  const requests: AgentRequest[] = [];
  let token = o.pageToken ?? "";
  do {
    const page = await client.listAgentRequests({ ...filter, pageToken: token }, deadline());
    requests.push(...page.requests);
    token = page.nextPageToken;
  } while (o.all && token);
  if (o.json) {
    print(JSON.stringify(requests.map((r) => toJson(AgentRequestSchema, r)), null, 2));
    return;
  }
  print(requests.length ? table(REQUEST_HEAD, requestRows(requests)) : `no ${o.rejected ? "rejected" : "pending"} keys`);
  if (token) print(`\nmore: --page-token ${token}  (or --all)`);
}

export async function accept({ operator, deadline }: CommandContext, id: string, fingerprint: string): Promise<void> {
  const r = await (await operator()).acceptAgent({ machineId: id, keyFingerprint: fingerprint }, deadline());
  if (r.alreadyAccepted) {
    print(`key sha256:${r.keyFingerprint} already is the key of ${id}; nothing changed`);
    return;
  }
  const replaced = r.previousKeyFingerprint ? `; replaces sha256:${r.previousKeyFingerprint}, now refused` : "";
  print(`accepted key sha256:${r.keyFingerprint} for ${id}${replaced}; hardware: ${HARDWARE_MATCH_NAMES[r.hardwareMatch]}`);
}

export async function reject({ operator, deadline }: CommandContext, id: string, fingerprint: string, reason: string): Promise<void> {
  const r = await (await operator()).rejectAgent({ machineId: id, keyFingerprint: fingerprint, reason }, deadline());
  print(r.alreadyRejected ? `key sha256:${r.keyFingerprint} was already rejected` : `rejected key sha256:${r.keyFingerprint} for ${id}`);
}
