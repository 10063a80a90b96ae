import { InvalidArgumentError, type Command } from "commander";
import { machineId, pageSize } from "./args.js";
import { example, type CommandContext } from "./context.js";
import type { PendingOptions } from "./agent-admission-run.js";

// bmctl agent pending | accept | reject: the operator's side of admission.
// The actions run from ./agent-admission-run.ts, loaded when one runs.

const admissionRun = () => import("./agent-admission-run.js");

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
    .action(ctx.run(async (o: PendingOptions) => (await admissionRun()).listPending(ctx, o)));

  agent
    .command("accept")
    .description("admit a pending (or rejected) key: it becomes the machine's key, the old one is refused from then on")
    .argument("<machine-id>", "machine ID", machineId)
    .argument("<fingerprint>", "the key's fingerprint or a unique prefix (8+ hex digits)", fingerprintArg)
    .addHelpText("after", example("bmctl agent accept 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 3f1c9a0b2e4d5f60"))
    .action(ctx.run(async (id: string, fingerprint: string) => (await admissionRun()).accept(ctx, id, fingerprint)));

  agent
    .command("reject")
    .description("refuse a pending key for good: its agent stays refused and records nothing more")
    .argument("<machine-id>", "machine ID", machineId)
    .argument("<fingerprint>", "the key's fingerprint or a unique prefix (8+ hex digits)", fingerprintArg)
    .option("--reason <text>", "kept with the decision")
    .addHelpText("after", example("bmctl agent reject 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 3f1c9a0b2e4d5f60 --reason 'not our image'"))
    .action(ctx.run(async (id: string, fingerprint: string, o: { reason?: string }) => (await admissionRun()).reject(ctx, id, fingerprint, o.reason ?? "")));
}
