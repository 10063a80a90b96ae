import * as grpc from "@grpc/grpc-js";
import { toJson, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import {
  MachineEventSchema,
  MachineSchema,
  MachineSummarySchema,
  type ListMachinesRequestSchema,
  type MachineSummary,
} from "../../gen/bmaas/operator/v1/operator_pb.js";
import { heartbeatStateOf, type HeartbeatStateName } from "../../lib/heartbeat-states.js";
import { oneLine } from "../private/fail.js";
import { formatEvent, formatMachine, MACHINE_HEAD, machineRows, table } from "../private/format.js";
import { print, type CommandContext } from "./context.js";
import { WatchEnded } from "./explain.js";

// The machine commands that decode and print machines (list, get, watch);
// machine.ts defines them and loads this file when one runs.

export interface ListOptions {
  heartbeat?: HeartbeatStateName;
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

export async function listMachines({ operator, deadline }: CommandContext, o: ListOptions): Promise<void> {
  if (o.needsRecovery && o.healthy) throw new Error("--needs-recovery and --healthy exclude each other");
  const filter: MessageInitShape<typeof ListMachinesRequestSchema> = {
    pageSize: o.pageSize,
    ...(o.heartbeat && { heartbeatState: heartbeatStateOf(o.heartbeat) }),
    ...(o.needsRecovery && { needsRecovery: true }),
    ...(o.healthy && { needsRecovery: false }),
    ...(o.provider !== undefined && { provider: o.provider }),
    ...(o.hasHardware && { hasHardwareReport: true }),
    ...(o.hardware === false && { hasHardwareReport: false }),
    ...(o.pendingInstallation && { pendingInstallation: true }),
    ...(o.search && { search: o.search }),
  };
  const client = await operator();
  const machines: MachineSummary[] = [];
  let token = o.pageToken ?? "";
  let next = "";
  do {
    const page = await client.listMachines({ ...filter, pageToken: token }, deadline());
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

export async function getMachine({ operator, deadline }: CommandContext, id: string, opts: { json?: boolean; history: number }): Promise<void> {
  const client = await operator();
  const [r, h] = await Promise.all([
    client.getMachine({ machineId: id }, deadline()),
    client.getMachineHistory({ machineId: id, pageSize: opts.history }, deadline()),
  ]);
  if (opts.json) {
    print(JSON.stringify({ ...(toJson(MachineSchema, r.machine!) as object), recentHistory: h.events.map((e) => toJson(MachineEventSchema, e)) }, null, 2));
    return;
  }
  print(formatMachine(r.machine!));
  print(`\nrecent history (newest first):\n${h.events.map((e) => "  " + formatEvent(e)).join("\n") || "  none"}`);
}

/** Prints events until the user interrupts or the server ends the stream. */
export async function watchMachines({ operator }: CommandContext, id: string | undefined, opts: { json?: boolean }): Promise<void> {
  const stream = (await operator()).watchMachines({ machineId: id ?? "" });
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
