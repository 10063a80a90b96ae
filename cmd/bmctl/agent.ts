import type { Command } from "commander";
import { addAgentAdmissionCommands } from "./agent-admission.js";
import { machineId, parsePublicKey } from "./args.js";
import { example, print, type CommandContext } from "./context.js";

// bmctl agent: register and revoke the key an agent proves itself with; its
// admission (pending, accept, reject) is in ./agent-admission.ts.

export function addAgentCommands(program: Command, ctx: CommandContext): void {
  const { operator, deadline, run } = ctx;
  const agent = program.command("agent").description("manage agent keys and their admission");
  agent
    .command("register")
    .description("record (preauthorize) the Ed25519 public key of the agent started on a machine (replaces an older key)")
    .argument("<machine-id>", "machine ID", machineId)
    .argument("<pubkey>", "raw Ed25519 public key, hex or base64", parsePublicKey)
    .addHelpText("after", example("bmctl agent register 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"))
    .action(
      run(async (id: string, publicKey: Uint8Array) => {
        const r = await (await operator()).registerAgent({ machineId: id, publicKey }, deadline());
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
        const r = await (await operator()).revokeAgent({ machineId: id }, deadline());
        print(`revoked key sha256:${r.keyFingerprint}`);
      }),
    );
  addAgentAdmissionCommands(agent, ctx);
}
