import type { Command } from "commander";
import { example, type CommandContext } from "./context.js";

// bmctl fleet: fleet-wide views (printed by fleet-run.ts, loaded when one runs).

export function addFleetCommands(program: Command, ctx: CommandContext): void {
  program
    .command("fleet")
    .description("fleet-wide views")
    .command("stats")
    .description("fleet counters and hardware totals by provider and location")
    .option("--json", "print JSON")
    .addHelpText("after", example("bmctl fleet stats"))
    .action(ctx.run(async (o: { json?: boolean }) => (await import("./fleet-run.js")).fleetStats(ctx, o)));
}
