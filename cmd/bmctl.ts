#!/usr/bin/env node
import * as grpc from "@grpc/grpc-js";
import { toJson, toJsonString } from "@bufbuild/protobuf";
import { Command, InvalidArgumentError, Option } from "commander";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { validate as isUuid } from "uuid";
import {
  FleetStatsResponseSchema,
  HeartbeatState,
  MachineEventSchema,
  MachineSchema,
  MachineSummarySchema,
  OperatorService,
  type ListMachinesRequestSchema,
  type MachineSummary,
} from "../gen/bmaas/operator/v1/operator_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { DEV_CERT_FILES } from "../lib/certs.js";
import { numberArg } from "../lib/flags.js";
import { createClient, type ServiceClient } from "../lib/grpc-adapter.js";
import { addAgentAdmissionCommands } from "./bmctl/agent-admission.js";
import type { CommandContext } from "./bmctl/context.js";
import { addMachineImportCommand } from "./bmctl/machine-import.js";
import { DEV_CERTS_HELP, findDevCerts } from "./private/dev-certs.js";
import { diagnoseConnection, type TlsMaterial } from "./private/diagnose.js";
import { fail, oneLine } from "./private/fail.js";
import { formatEvent, formatFleetStats, formatMachine, MACHINE_HEAD, machineRows, table } from "./private/format.js";

const NAME = "bmctl";
const DEADLINE_MS = 15_000;

// grpc-js sets the TLS server name to the target host even when it is an IP
// address, which makes Node print a deprecation warning: noise on a CLI whose
// errors are one line.
process.noDeprecation = true;

interface GlobalFlags {
  server: string;
  ca?: string;
  cert?: string;
  key?: string;
  certsDir?: string;
}

type Operator = ServiceClient<(typeof OperatorService)["method"]>;

function readFlagFile(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    fail(NAME, `${flag} ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`, 2);
  }
}

/** Explicit files win; otherwise a certificate directory; otherwise npm start's. */
function tlsMaterial(flags: GlobalFlags): TlsMaterial {
  const dir = flags.certsDir ?? (flags.ca && flags.cert && flags.key ? undefined : findDevCerts());
  const pick = (flag: string, explicit: string | undefined, file: string) => {
    if (explicit) return readFlagFile(flag, explicit);
    if (!dir) fail(NAME, `no ${flag} given and no development certificates in ./.bmaas-dev/certs or bmctl's checkout (run npm start first, or pass --ca, --cert and --key)`, 2);
    return readFlagFile(flag, join(dir, file));
  };
  return {
    ca: pick("--ca", flags.ca, DEV_CERT_FILES.caCert),
    key: pick("--key", flags.key, DEV_CERT_FILES.operatorKey),
    cert: pick("--cert", flags.cert, DEV_CERT_FILES.operatorCert),
  };
}

/** A watch stream the server ended with an error, and whether events had started to flow. */
class WatchEnded extends Error {
  constructor(
    readonly error: grpc.ServiceError,
    readonly started: boolean,
  ) {
    super(error.message);
  }
}

/**
 * Why the server ended a watch, in the user's terms. The server's own text is
 * not shown where it may carry internals (a database error, a stack): an
 * ended watch needs only what to do next.
 */
function explainWatchEnd(err: grpc.ServiceError, server: string): string | undefined {
  switch (err.code) {
    case grpc.status.RESOURCE_EXHAUSTED:
      return `the server at ${server} ended the watch: it fell too far behind the events; watch again (bmctl machine get shows the current state)`;
    case grpc.status.INTERNAL:
    case grpc.status.UNKNOWN:
    case grpc.status.DATA_LOSS:
      return `the server at ${server} ended the watch with an internal error (${grpc.status[err.code]}); its log has the details`;
    case grpc.status.UNAVAILABLE:
      return `the server at ${server} ended the watch: machine events are unavailable right now (UNAVAILABLE); watch again later`;
    default:
      return undefined;
  }
}

/** One line per failure, naming what went wrong in the user's terms. */
async function explain(e: unknown, flags: GlobalFlags, tls: TlsMaterial | undefined): Promise<string> {
  if (e instanceof WatchEnded) {
    // Before the first response an UNAVAILABLE is the connection's: diagnosed below.
    const why = e.started || e.error.code !== grpc.status.UNAVAILABLE ? explainWatchEnd(e.error, flags.server) : undefined;
    if (why) return why;
    e = e.error;
  }
  const err = e as Partial<grpc.ServiceError>;
  // What the server says is shown as one line without control characters.
  const details = oneLine(err.details ?? "", 300);
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      if (/Name resolution failed/.test(err.details ?? "")) return `cannot reach the server at ${flags.server}: unknown host`;
      return tls ? diagnoseConnection(flags.server, tls) : `cannot reach the server at ${flags.server}: ${details}`;
    case grpc.status.DEADLINE_EXCEEDED:
      return `the server at ${flags.server} did not answer within ${DEADLINE_MS / 1000}s`;
    case grpc.status.NOT_FOUND:
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.FAILED_PRECONDITION:
      return details || "request refused";
    case grpc.status.INTERNAL:
    case grpc.status.UNKNOWN:
    case grpc.status.DATA_LOSS:
      return `the server at ${flags.server} failed (${grpc.status[err.code]}); its log has the details`;
    case undefined:
      return (e as Error).message;
    default:
      return `${grpc.status[err.code] ?? `code ${err.code}`}: ${details}`;
  }
}

/** Accepts a raw 32-byte Ed25519 public key as hex or (url-safe) base64. */
export function parsePublicKey(text: string): Uint8Array {
  const t = text.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : /^[A-Za-z0-9+/_-]{43}=?$/.test(t) ? Buffer.from(t, "base64") : undefined;
  if (!bytes || bytes.length !== 32) {
    throw new InvalidArgumentError("want a 32-byte Ed25519 public key as 64 hex digits or base64");
  }
  return bytes;
}

/** Checked before dialling, so a typo gets its own message. */
function machineId(text: string): string {
  if (!isUuid(text)) throw new InvalidArgumentError(`"${text}" is not a machine ID (a UUID like 9b4b8487-6a66-4ca3-b732-0f789f43f1a8)`);
  return text.toLowerCase();
}

function generation(text: string): bigint {
  if (!/^\d+$/.test(text) || BigInt(text) <= 0n || BigInt(text) > 2n ** 63n - 1n) {
    throw new InvalidArgumentError("must be a positive 64-bit integer");
  }
  return BigInt(text);
}

/** Page sizes: the server serves at most 1000 per page. */
const pageSize = numberArg({ min: 1, max: 1000, integer: true });

const HEARTBEAT_STATES: Record<string, HeartbeatState> = {
  fresh: HeartbeatState.FRESH,
  stale: HeartbeatState.STALE,
  never: HeartbeatState.NEVER,
};

const print = (text: string) => process.stdout.write(text + "\n");

async function main(): Promise<void> {
  const program = new Command(NAME)
    .description("Operate the bare-metal agent callback service over its internal (mTLS) listener.")
    .configureOutput({ outputError: (str, write) => write(str.trim().split("\n")[0] + "\n") })
    .addOption(new Option("--server <addr>", "internal listener").env("BMCTL_SERVER").default("localhost:4242"))
    .addOption(new Option("--ca <file>", "CA that signed the server certificate").env("BMCTL_CA"))
    .addOption(new Option("--cert <file>", "operator client certificate").env("BMCTL_CERT"))
    .addOption(new Option("--key <file>", "key of --cert").env("BMCTL_KEY"))
    .addOption(new Option("--certs-dir <dir>", "directory with ca.pem, operator.pem, operator-key.pem").env("BMCTL_CERTS_DIR"))
    .addHelpText("after", `\nWith no flags, bmctl uses the development certificates and listener of \`npm start\`.\n${DEV_CERTS_HELP}\n\nExample:\n  bmctl machine list --heartbeat stale`);

  let client: Operator | undefined;
  let tls: TlsMaterial | undefined;
  const operator = (): Operator => {
    const flags = program.opts<GlobalFlags>();
    tls ??= tlsMaterial(flags);
    return (client ??= createClient(OperatorService, flags.server, grpc.credentials.createSsl(tls.ca, tls.key, tls.cert)));
  };
  const deadline = () => ({ deadline: Date.now() + DEADLINE_MS });
  // Commander passes each action its parsed arguments; run() adds the common
  // error handling and closes the connection.
  const run = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      fail(NAME, await explain(e, program.opts<GlobalFlags>(), tls));
    } finally {
      client?.close();
    }
  };
  const example = (text: string) => `\nExample:\n  ${text}`;
  const ctx: CommandContext = { operator, run, deadline, print, example, machineId, pageSize };

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
    .option("--page-size <n>", "machines per page (max 1000)", pageSize, 100)
    .option("--page-token <token>", "continue after a previous page")
    .option("--all", "follow every page")
    .option("--json", "print JSON (one array)")
    .addHelpText("after", example("bmctl machine list --provider equinix --heartbeat stale --all"))
    .action(
      run(
        async (o: {
          heartbeat?: string;
          needsRecovery?: boolean;
          healthy?: boolean;
          provider?: string;
          hasHardware?: boolean;
          hardware?: boolean;
          pendingInstallation?: boolean;
          pageSize: number;
          pageToken?: string;
          all?: boolean;
          json?: boolean;
        }) => {
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
        },
      ),
    );

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
    .action(
      run(async (id: string | undefined, opts: { json?: boolean }) => {
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
      }),
    );

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

  const agent = program.command("agent").description("manage agent keys and their admission");
  addAgentAdmissionCommands(agent, ctx);
  agent
    .command("register")
    .description("record the Ed25519 public key of the agent started on a machine (replaces an older key)")
    .argument("<machine-id>", "machine ID", machineId)
    .argument("<pubkey>", "raw Ed25519 public key, hex or base64", parsePublicKey)
    .addHelpText("after", example("bmctl agent register 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"))
    .action(
      run(async (id: string, publicKey: Uint8Array) => {
        const r = await operator().registerAgent({ machineId: id, publicKey }, deadline());
        print(`registered key sha256:${r.keyFingerprint}`);
      }),
    );
  agent
    .command("revoke")
    .description("remove the machine's agent key and heartbeat: that agent is refused from now on")
    .argument("<machine-id>", "machine ID", machineId)
    .addHelpText("after", example("bmctl agent revoke 9b4b8487-6a66-4ca3-b732-0f789f43f1a8"))
    .action(
      run(async (id: string) => {
        const r = await operator().revokeAgent({ machineId: id }, deadline());
        print(`revoked key sha256:${r.keyFingerprint}`);
      }),
    );

  program
    .command("install")
    .description("steer OS installations")
    .command("request")
    .description("ask the machine's agent to install an OS (replaces an older request)")
    .argument("<machine-id>", "machine ID", machineId)
    .requiredOption("--generation <n>", "positive number; a report for it stops the request", generation)
    .requiredOption("--root-device <dev>", "device to install to, e.g. /dev/nvme0n1")
    .option("--image-scheme <scheme>", "OS image registry scheme", "https")
    .option("--image-host <host>", "OS image registry host")
    .option("--image-repository <repo>", "OS image repository")
    .option("--image-tag <tag>", "OS image tag")
    .option("--image-digest <digest>", "OS image digest, e.g. sha256:…")
    .option("--node-parameters <file>", "file with serialized node parameters, forwarded opaquely")
    .addHelpText("after", example("bmctl install request ID --generation 1 --root-device /dev/sda --image-host registry.example --image-repository os --image-tag v1"))
    .action(
      run(
        async (
          id: string,
          o: { generation: bigint; rootDevice: string; imageScheme: string; imageHost?: string; imageRepository?: string; imageTag?: string; imageDigest?: string; nodeParameters?: string },
        ) => {
          const image = o.imageHost || o.imageRepository || o.imageTag || o.imageDigest;
          await operator().setInstallationRequest(
            {
              machineId: id,
              generation: o.generation,
              rootDevice: o.rootDevice,
              ...(image && {
                osImage: {
                  scheme: o.imageScheme,
                  host: o.imageHost ?? "",
                  repository: o.imageRepository ?? "",
                  ...(o.imageTag !== undefined && { tag: o.imageTag }),
                  digest: o.imageDigest ?? "",
                },
              }),
              ...(o.nodeParameters && { nodeParameters: readFlagFile("--node-parameters", o.nodeParameters) }),
            },
            deadline(),
          );
          print(`installation generation ${o.generation} requested for ${id}`);
        },
      ),
    );

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

  await program.parseAsync();
}

void main();
