import * as grpc from "@grpc/grpc-js";
import { toJson, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { Option, type Command } from "commander";
import {
  HeartbeatState,
  MachineEventSchema,
  MachineSchema,
  MachineSummarySchema,
  type ListMachinesRequestSchema,
  type MachineSummary,
} from "../../gen/bmaas/operator/v1/operator_pb.js";
import { oneLine } from "../private/fail.js";
import { formatEvent, formatMachine, MACHINE_HEAD, machineRows, table } from "../private/format.js";
import { machineId, pageSize } from "./args.js";
import { addMachineImportCommand } from "./machine-import.js";
import { example, print, type CommandContext } from "./context.js";
import { WatchEnded } from "./explain.js";

// bmctl machine: create, list, get, watch, delete, update-provider; import
// is in ./machine-import.ts.

const HEARTBEAT_STATES: Record<string, HeartbeatState> = {
  fresh: HeartbeatState.FRESH,
  stale: HeartbeatState.STALE,
  never: HeartbeatState.NEVER,
};

interface ListOptions {
  heartbeat?: string;
  needsRecovery?: boolean;
  healthy?: boolean;
  provider?: string;
  hasHardware?: boolean;
  hardware?: boolean;
  pendingInstallation?: boolean;
  search?: string;
  pageSize: number;
  pageToken?: string;
  all?: boolean;
  json?: boolean;
}

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
        const r = await operator().createMachine({ provider: opts.provider ?? "", providerId: opts.providerId ?? "" }, deadline());
        print(r.machineId);
      }),
    );

  machine
    .command("list")
    .description("list machines, filtered, a page at a time (or --all)")
    .addOption(new Option("--heartbeat <state>", "last heartbeat state").choices(Object.keys(HEARTBEAT_STATES)))
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
    .action(run((o: ListOptions) => listMachines(ctx, o)));

  machine
    .command("get")
    .description("show a machine with every tag and its recent history")
    .argument("<machine-id>", "machine ID", machineId)
    .option("--json", "print the machine as JSON")
    .option("--history <n>", "how many recent events to show (max 1000)", pageSize, 10)
    .addHelpText("after", example("bmctl machine get 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 --json"))
    .action(
      run(async (id: string, opts: { json?: boolean; history: number }) => {
        const [r, h] = await Promise.all([
          operator().getMachine({ machineId: id }, deadline()),
          operator().getMachineHistory({ machineId: id, pageSize: opts.history }, deadline()),
        ]);
        if (opts.json) {
          print(
            JSON.stringify(
              { ...(toJson(MachineSchema, r.machine!) as object), recentHistory: h.events.map((e) => toJson(MachineEventSchema, e)) },
              null,
              2,
            ),
          );
          return;
        }
        print(formatMachine(r.machine!));
        print(`\nrecent history (newest first):\n${h.events.map((e) => "  " + formatEvent(e)).join("\n") || "  none"}`);
      }),
    );

  machine
    .command("watch")
    .description("print one line per machine event as it happens, until interrupted")
    .argument("[machine-id]", "only this machine", machineId)
    .option("--json", "print each event as a JSON line")
    .addHelpText("after", example("bmctl machine watch 9b4b8487-6a66-4ca3-b732-0f789f43f1a8"))
    .action(run((id: string | undefined, opts: { json?: boolean }) => watchMachines(ctx, id, opts)));

  machine
    .command("delete")
    .description("delete a machine and its tags (its history is kept)")
    .argument("<machine-id>", "machine ID", machineId)
    .addHelpText("after", example("bmctl machine delete 9b4b8487-6a66-4ca3-b732-0f789f43f1a8"))
    .action(
      run(async (id: string) => {
        await operator().deleteMachine({ machineId: id }, deadline());
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
        await operator().updateProvider({ machineId: id, ...o }, deadline());
        print(`updated ${id}`);
      }),
    );
  addMachineImportCommand(machine, ctx);
}

async function listMachines({ operator, deadline }: CommandContext, o: ListOptions): Promise<void> {
  if (o.needsRecovery && o.healthy) throw new Error("--needs-recovery and --healthy exclude each other");
  const filter: MessageInitShape<typeof ListMachinesRequestSchema> = {
    pageSize: o.pageSize,
    ...(o.heartbeat && { heartbeatState: HEARTBEAT_STATES[o.heartbeat] }),
    ...(o.needsRecovery && { needsRecovery: true }),
    ...(o.healthy && { needsRecovery: false }),
    ...(o.provider !== undefined && { provider: o.provider }),
    ...(o.hasHardware && { hasHardwareReport: true }),
    ...(o.hardware === false && { hasHardwareReport: false }),
    ...(o.pendingInstallation && { pendingInstallation: true }),
    ...(o.search && { search: o.search }),
  };
  const machines: MachineSummary[] = [];
  let token = o.pageToken ?? "";
  let next = "";
  do {
    const page = await operator().listMachines({ ...filter, pageToken: token }, deadline());
    machines.push(...page.machines);
    next = token = page.nextPageToken;
  } while (o.all && token);
  if (o.json) {
    print(JSON.stringify(machines.map((m) => toJson(MachineSummarySchema, m)), null, 2));
    return;
  }
  print(machines.length ? table(MACHINE_HEAD, machineRows(machines)) : "no machines match");
  if (next) print(`\nmore: --page-token ${next}  (or --all)`);
}

/** Prints events until the user interrupts or the server ends the stream. */
async function watchMachines({ operator }: CommandContext, id: string | undefined, opts: { json?: boolean }): Promise<void> {
  const stream = operator().watchMachines({ machineId: id ?? "" });
  process.once("SIGINT", () => stream.cancel());
  process.once("SIGTERM", () => stream.cancel());
  let started = false;
  await new Promise<void>((resolve, reject) => {
    stream.once("metadata", () => {
      started = true;
      process.stderr.write(`watching ${id ?? "all machines"} (Ctrl-C to stop)\n`);
    });
    stream.on("data", (item: { item: { case: "event" | "gap" | undefined; value?: unknown } }) => {
      started = true;
      const it = item.item;
      if (it.case === "event") {
        const e = it.value as Parameters<typeof formatEvent>[0];
        // JSON escapes control characters itself; the human line is cleaned.
        print(opts.json ? toJsonString(MachineEventSchema, e) : oneLine(formatEvent(e), 10_000));
      } else if (it.case === "gap") {
        print(`gap: ${oneLine(String(it.value), 1000)}`);
      }
    });
    stream.on("error", (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(new WatchEnded(e, started))));
    stream.on("end", () => resolve());
  });
}
