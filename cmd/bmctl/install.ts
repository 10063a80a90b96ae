import type { Command } from "commander";
import { generation, machineId } from "./args.js";
import { readFlagFile } from "./client.js";
import { example, print, type CommandContext } from "./context.js";

// bmctl install: steer OS installations.

interface RequestOptions {
  generation: bigint;
  rootDevice: string;
  imageScheme: string;
  imageHost?: string;
  imageRepository?: string;
  imageTag?: string;
  imageDigest?: string;
  nodeParameters?: string;
}

export function addInstallCommands(program: Command, { operator, deadline, run }: CommandContext): void {
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
      run(async (id: string, o: RequestOptions) => {
        const image = o.imageHost || o.imageRepository || o.imageTag || o.imageDigest;
        await (await operator()).setInstallationRequest(
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
      }),
    );
}
