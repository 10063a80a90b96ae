import { Option, type Command } from "commander";
import { HEARTBEAT_STATE_NAMES } from "../../lib/heartbeat-states.js";
import { machineId, pageSize } from "./args.js";
import { addMachineImportCommand } from "./machine-import.js";
import { example, print, type CommandContext } from "./context.js";
import type { ListOptions } from "./machine-run.js";

// bmctl machine: create, list, get, watch, delete, update-provider. The
// commands that decode and print machines run from machine-run.ts, loaded
// when one of them runs; import is in ./machine-import.ts.

const machineRun = () => import("./machine-run.js");

export function addMachineCommands(program: Command, ctx: CommandContext): void {
  const { operator, deadline, run } = ctx;
  const machine = program.command("machine").description("create, list, inspect, watch and delete machines");
  machine
    .command("create")
    .description("create a machine and print its ID")
    .option("--provider <name>", "provider that supplied the machine (with --provider-id)")
    .option("--provider-id <id>", "the machine's ID at that provider")
    .addHelpText("after", example("bmctl machine create --provider equinix --provider-id da-11"))
    .action(
      run(async (opts: { provider?: string; providerId?: string }) => {
        const r = await (await operator()).createMachine({ provider: opts.provider ?? "", providerId: opts.providerId ?? "" }, deadline());
        print(r.machineId);
      }),
    );

  machine
    .command("list")
    .description("list machines, filtered, a page at a time (or --all)")
    .addOption(new Option("--heartbeat <state>", "last heartbeat state").choices(HEARTBEAT_STATE_NAMES))
    .option("--needs-recovery", "only machines that need recovery")
    .option("--healthy", "only machines that do not need recovery")
    .option("--provider <name>", "only this provider's machines")
    .option("--has-hardware", "only machines with a hardware report")
    .option("--no-hardware", "only machines without a hardware report")
    .option("--pending-installation", "only machines with an installation request not yet reported")
    .option("--search <prefix>", "only machines whose ID, provider ID or key fingerprint starts with this")
    .option("--page-size <n>", "machines per page (max 1000)", pageSize, 100)
    .option("--page-token <token>", "continue after a previous page")
    .option("--all", "follow every page")
    .option("--json", "print JSON (one array)")
    .addHelpText("after", example("bmctl machine list --provider equinix --heartbeat stale --all"))
    .action(run(async (o: ListOptions) => (await machineRun()).listMachines(ctx, o)));

  machine
    .command("get")
    .description("show a machine with every tag and its recent history")
    .argument("<machine-id>", "machine ID", machineId)
    .option("--json", "print the machine as JSON")
    .option("--history <n>", "how many recent events to show (max 1000)", pageSize, 10)
    .addHelpText("after", example("bmctl machine get 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 --json"))
    .action(run(async (id: string, opts: { json?: boolean; history: number }) => (await machineRun()).getMachine(ctx, id, opts)));

  machine
    .command("watch")
    .description("print one line per machine event as it happens, until interrupted")
    .argument("[machine-id]", "only this machine", machineId)
    .option("--json", "print each event as a JSON line")
    .addHelpText("after", example("bmctl machine watch 9b4b8487-6a66-4ca3-b732-0f789f43f1a8"))
    .action(run(async (id: string | undefined, opts: { json?: boolean }) => (await machineRun()).watchMachines(ctx, id, opts)));

  machine
    .command("delete")
    .description("delete a machine and its tags (its history is kept)")
    .argument("<machine-id>", "machine ID", machineId)
    .addHelpText("after", example("bmctl machine delete 9b4b8487-6a66-4ca3-b732-0f789f43f1a8"))
    .action(
      run(async (id: string) => {
        await (await operator()).deleteMachine({ machineId: id }, deadline());
        print(`deleted ${id}`);
      }),
    );

  machine
    .command("update-provider")
    .description("set what the provider reports of a provided machine")
    .argument("<machine-id>", "machine ID", machineId)
    .option("--status <s>", "provider status")
    .option("--address <a>", "address")
    .option("--location <l>", "location")
    .addHelpText("after", example("bmctl machine update-provider 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 --status active --location fra2"))
    .action(
      run(async (id: string, o: { status?: string; address?: string; location?: string }) => {
        await (await operator()).updateProvider({ machineId: id, ...o }, deadline());
        print(`updated ${id}`);
      }),
    );
  addMachineImportCommand(machine, ctx);
}
