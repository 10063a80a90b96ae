import { toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { InvalidArgumentError, type Command } from "commander";
import { AdmissionState, AgentRequestSchema, type AgentRequest, type ListAgentRequestsRequestSchema } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { HARDWARE_MATCH_NAMES } from "../../lib/display.js";
import { REQUEST_HEAD, requestRows } from "../private/admission-format.js";
import { table } from "../private/format.js";
import { machineId, pageSize } from "./args.js";
import { example, print, type CommandContext } from "./context.js";

// bmctl agent pending | accept | reject: the operator's side of admission.

/** A key fingerprint or a unique prefix: 8 to 64 hex digits, "sha256:" allowed first. */
export function fingerprintArg(text: string): string {
  const t = text.trim().toLowerCase().replace(/^sha256:/, "");
  if (!/^[0-9a-f]{8,64}$/.test(t)) throw new InvalidArgumentError("want a key fingerprint: 8 to 64 hex digits (as bmctl agent pending shows)");
  return t;
}

export function addAgentAdmissionCommands(agent: Command, ctx: CommandContext): void {
  agent
    .command("pending")
    .description("list agent keys waiting for admission (or rejected ones), oldest machine ID first")
    .option("--machine <machine-id>", "only this machine's keys", machineId)
    .option("--provider <name>", "only machines of this provider")
    .option("--rekeyed", "only machines that already have a key (reinstalled, disk replaced)")
    .option("--new", "only machines without a key yet")
    .option("--rejected", "list rejected keys instead of pending ones")
    .option("--page-size <n>", "keys per page (max 1000)", pageSize, 100)
    .option("--page-token <token>", "continue after a previous page")
    .option("--all", "follow every page")
    .option("--json", "print JSON (one array)")
    .addHelpText("after", example("bmctl agent pending --rekeyed --all"))
    .action(
      ctx.run(
        async (o: { machine?: string; provider?: string; rekeyed?: boolean; new?: boolean; rejected?: boolean; pageSize: number; pageToken?: string; all?: boolean; json?: boolean }) => {
          if (o.rekeyed && o.new) throw new Error("--rekeyed and --new exclude each other");
          const filter: MessageInitShape<typeof ListAgentRequestsRequestSchema> = {
            pageSize: o.pageSize,
            state: o.rejected ? AdmissionState.REJECTED : AdmissionState.PENDING,
            ...(o.machine && { machineId: o.machine }),
            ...(o.provider !== undefined && { provider: o.provider }),
            ...(o.rekeyed && { rekeyed: true }),
            ...(o.new && { rekeyed: false }),
          };
          const requests: AgentRequest[] = [];
          let token = o.pageToken ?? "";
          do {
            const page = await ctx.operator().listAgentRequests({ ...filter, pageToken: token }, ctx.deadline());
            requests.push(...page.requests);
            token = page.nextPageToken;
          } while (o.all && token);
          if (o.json) {
            print(JSON.stringify(requests.map((r) => toJson(AgentRequestSchema, r)), null, 2));
            return;
          }
          print(requests.length ? table(REQUEST_HEAD, requestRows(requests)) : `no ${o.rejected ? "rejected" : "pending"} keys`);
          if (token) print(`\nmore: --page-token ${token}  (or --all)`);
        },
      ),
    );

  agent
    .command("accept")
    .description("admit a pending (or rejected) key: it becomes the machine's key, the old one is refused from then on")
    .argument("<machine-id>", "machine ID", machineId)
    .argument("<fingerprint>", "the key's fingerprint or a unique prefix (8+ hex digits)", fingerprintArg)
    .addHelpText("after", example("bmctl agent accept 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 3f1c9a0b2e4d5f60"))
    .action(
      ctx.run(async (id: string, fingerprint: string) => {
        const r = await ctx.operator().acceptAgent({ machineId: id, keyFingerprint: fingerprint }, ctx.deadline());
        if (r.alreadyAccepted) {
          print(`key sha256:${r.keyFingerprint} already is the key of ${id}; nothing changed`);
          return;
        }
        const replaced = r.previousKeyFingerprint ? `; replaces sha256:${r.previousKeyFingerprint}, now refused` : "";
        print(`accepted key sha256:${r.keyFingerprint} for ${id}${replaced}; hardware: ${HARDWARE_MATCH_NAMES[r.hardwareMatch]}`);
      }),
    );

  agent
    .command("reject")
    .description("refuse a pending key for good: its agent stays refused and records nothing more")
    .argument("<machine-id>", "machine ID", machineId)
    .argument("<fingerprint>", "the key's fingerprint or a unique prefix (8+ hex digits)", fingerprintArg)
    .option("--reason <text>", "kept with the decision")
    .addHelpText("after", example("bmctl agent reject 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 3f1c9a0b2e4d5f60 --reason 'not our image'"))
    .action(
      ctx.run(async (id: string, fingerprint: string, o: { reason?: string }) => {
        const r = await ctx.operator().rejectAgent({ machineId: id, keyFingerprint: fingerprint, reason: o.reason ?? "" }, ctx.deadline());
        print(r.alreadyRejected ? `key sha256:${r.keyFingerprint} was already rejected` : `rejected key sha256:${r.keyFingerprint} for ${id}`);
      }),
    );
}
