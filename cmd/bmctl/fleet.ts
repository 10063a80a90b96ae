import { toJsonString } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { FleetStatsResponseSchema } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { formatFleetStats } from "../private/format.js";
import { example, print, type CommandContext } from "./context.js";

// bmctl fleet: fleet-wide views.

export function addFleetCommands(program: Command, { operator, deadline, run }: CommandContext): void {
  program
    .command("fleet")
    .description("fleet-wide views")
    .command("stats")
    .description("fleet counters and hardware totals by provider and location")
    .option("--json", "print JSON")
    .addHelpText("after", example("bmctl fleet stats"))
    .action(
      run(async (o: { json?: boolean }) => {
        const s = await operator().fleetStats({}, deadline());
        print(o.json ? toJsonString(FleetStatsResponseSchema, s, { prettySpaces: 2 }) : formatFleetStats(s));
      }),
    );
}
