#!/usr/bin/env node
import * as grpc from "@grpc/grpc-js";
import { toJsonString } from "@bufbuild/protobuf";
import { Command, InvalidArgumentError, Option } from "commander";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MachineSchema, OperatorService } from "../gen/bmaas/operator/v1/operator_pb.js";
import { DEV_CERT_FILES } from "../server/certs.js";
import { createClient, type ServiceClient } from "../server/grpc-adapter.js";
import { findDevCerts } from "./private/dev-certs.js";
import { fail } from "./private/fail.js";
import { formatMachine } from "./private/format.js";

const NAME = "bmctl";

// grpc-js sets the TLS server name to the target host even when it is an IP
// address, which makes Node print a deprecation warning: noise on a CLI whose
// errors are one line.
process.noDeprecation = true;
const DEADLINE_MS = 15_000;

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
function credentials(flags: GlobalFlags): grpc.ChannelCredentials {
  const dir = flags.certsDir ?? (flags.ca && flags.cert && flags.key ? undefined : findDevCerts());
  const pick = (flag: string, explicit: string | undefined, file: string) => {
    if (explicit) return readFlagFile(flag, explicit);
    if (!dir) fail(NAME, `no ${flag} given and no development certificates found (run npm start first, or pass --ca, --cert and --key)`, 2);
    return readFlagFile(flag, join(dir, file));
  };
  return grpc.credentials.createSsl(
    pick("--ca", flags.ca, DEV_CERT_FILES.caCert),
    pick("--key", flags.key, DEV_CERT_FILES.operatorKey),
    pick("--cert", flags.cert, DEV_CERT_FILES.operatorCert),
  );
}

/** One line per failure, naming what went wrong in the user's terms. */
function explain(e: unknown, flags: GlobalFlags): string {
  const err = e as Partial<grpc.ServiceError>;
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      return `cannot reach the server at ${flags.server}, or it refused our certificate: ${err.details}`;
    case grpc.status.DEADLINE_EXCEEDED:
      return `the server at ${flags.server} did not answer within ${DEADLINE_MS / 1000}s`;
    case grpc.status.NOT_FOUND:
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.ALREADY_EXISTS:
      return err.details ?? "request refused";
    case undefined:
      return (e as Error).message;
    default:
      return `${grpc.status[err.code]}: ${err.details}`;
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

function generation(text: string): bigint {
  if (!/^\d+$/.test(text) || BigInt(text) <= 0n || BigInt(text) > 2n ** 63n - 1n) {
    throw new InvalidArgumentError("must be a positive 64-bit integer");
  }
  return BigInt(text);
}

async function main(): Promise<void> {
  const program = new Command(NAME)
    .description("Operate the bare-metal agent callback service over its internal (mTLS) listener.")
    .configureOutput({ outputError: (str, write) => write(str.trim().split("\n")[0] + "\n") })
    .addOption(new Option("--server <addr>", "internal listener").env("BMCTL_SERVER").default("localhost:4242"))
    .addOption(new Option("--ca <file>", "CA that signed the server certificate").env("BMCTL_CA"))
    .addOption(new Option("--cert <file>", "operator client certificate").env("BMCTL_CERT"))
    .addOption(new Option("--key <file>", "key of --cert").env("BMCTL_KEY"))
    .addOption(new Option("--certs-dir <dir>", "directory with ca.pem, operator.pem, operator-key.pem").env("BMCTL_CERTS_DIR"))
    .addHelpText("after", "\nWith no flags, bmctl uses the development certificates and listener of `npm start`.");

  let client: Operator | undefined;
  const operator = (): Operator => {
    const flags = program.opts<GlobalFlags>();
    return (client ??= createClient(OperatorService, flags.server, credentials(flags)));
  };
  const deadline = () => ({ deadline: Date.now() + DEADLINE_MS });
  // Commander passes each action its parsed arguments; run() adds the common
  // error handling and closes the connection.
  const run = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      fail(NAME, explain(e, program.opts<GlobalFlags>()));
    } finally {
      client?.close();
    }
  };

  const machine = program.command("machine").description("create and inspect machines");
  machine
    .command("create")
    .description("create a machine and print its ID")
    .option("--provider <name>", "provider that supplied the machine (with --provider-id)")
    .option("--provider-id <id>", "the machine's ID at that provider")
    .addHelpText("after", "\nExample:\n  bmctl machine create --provider equinix --provider-id da-11")
    .action(
      run(async (opts: { provider?: string; providerId?: string }) => {
        const r = await operator().createMachine({ provider: opts.provider ?? "", providerId: opts.providerId ?? "" }, deadline());
        process.stdout.write(`${r.machineId}\n`);
      }),
    );
  machine
    .command("get")
    .description("show a machine with every tag")
    .argument("<machine-id>")
    .option("--json", "print the machine as JSON")
    .addHelpText("after", "\nExample:\n  bmctl machine get 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 --json")
    .action(
      run(async (machineId: string, opts: { json?: boolean }) => {
        const r = await operator().getMachine({ machineId }, deadline());
        const m = r.machine!;
        process.stdout.write((opts.json ? toJsonString(MachineSchema, m, { prettySpaces: 2 }) : formatMachine(m)) + "\n");
      }),
    );

  program
    .command("agent")
    .description("manage agent keys")
    .command("register")
    .description("record the Ed25519 public key of the agent started on a machine (replaces an older key)")
    .argument("<machine-id>")
    .argument("<pubkey>", "raw Ed25519 public key, hex or base64", parsePublicKey)
    .addHelpText("after", "\nExample:\n  bmctl agent register 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    .action(
      run(async (machineId: string, publicKey: Uint8Array) => {
        const r = await operator().registerAgent({ machineId, publicKey }, deadline());
        process.stdout.write(`registered key sha256:${r.keyFingerprint}\n`);
      }),
    );

  program
    .command("install")
    .description("steer OS installations")
    .command("request")
    .description("ask the machine's agent to install an OS (replaces an older request)")
    .argument("<machine-id>")
    .requiredOption("--generation <n>", "positive number; a report for it stops the request", generation)
    .requiredOption("--root-device <dev>", "device to install to, e.g. /dev/nvme0n1")
    .option("--image-scheme <scheme>", "OS image registry scheme", "https")
    .option("--image-host <host>", "OS image registry host")
    .option("--image-repository <repo>", "OS image repository")
    .option("--image-tag <tag>", "OS image tag")
    .option("--image-digest <digest>", "OS image digest, e.g. sha256:…")
    .option("--node-parameters <file>", "file with serialized node parameters, forwarded opaquely")
    .addHelpText("after", "\nExample:\n  bmctl install request ID --generation 1 --root-device /dev/sda --image-host registry.example --image-repository os --image-tag v1")
    .action(
      run(
        async (
          machineId: string,
          o: { generation: bigint; rootDevice: string; imageScheme: string; imageHost?: string; imageRepository?: string; imageTag?: string; imageDigest?: string; nodeParameters?: string },
        ) => {
          const image = o.imageHost || o.imageRepository || o.imageTag || o.imageDigest;
          await operator().setInstallationRequest(
            {
              machineId,
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
          process.stdout.write(`installation generation ${o.generation} requested for ${machineId}\n`);
        },
      ),
    );

  await program.parseAsync();
}

void main();
