import { Option, type Command } from "commander";
import { numberArg } from "../../lib/flags.js";
import { example, type CommandContext } from "./context.js";
import type { ImportOptions } from "./machine-import-run.js";

// bmctl machine import FILE: bulk onboarding through ImportMachines. The
// action runs from ./machine-import-run.ts, loaded when it runs.

export function addMachineImportCommand(machine: Command, ctx: CommandContext): void {
  machine
    .command("import")
    .description("create machines and preauthorize their agents' keys in bulk, from CSV or JSON lines (idempotent)")
    .argument("<file>", "provider,provider_id[,public_key] per line (CSV), or JSON lines with those fields")
    .addOption(new Option("--format <format>", "file format (default: from the name or the first line)").choices(["csv", "jsonl"]))
    .option("--batch-size <n>", "machines per request (one transaction each, max 5000)", numberArg({ min: 1, max: 5000, integer: true }), 2000)
    .option("--parallel <n>", "requests in flight at once", numberArg({ min: 1, max: 16, integer: true }), 2)
    .addHelpText(
      "after",
      `${example("bmctl machine import machines.csv")}\n\nEvery line is checked before anything is sent: one bad line and nothing is imported (each bad line is listed).\nA machine is identified by (provider, provider_id); running the same file again changes nothing.\nA key different from a machine's current key is reported as a conflict and left alone (exit status 1).`,
    )
    .action(ctx.run(async (file: string, o: ImportOptions) => (await import("./machine-import-run.js")).importFile(ctx, file, o)));
}
