import { Command } from "commander";
import { addAgentCommands } from "./agent.js";
import { addGlobalFlags, NAME } from "./client.js";
import { commandContext } from "./context.js";
import { addFleetCommands } from "./fleet.js";
import { addInstallCommands } from "./install.js";
import { addMachineCommands } from "./machine.js";

// bmctl's command tree: the root with its global flags, one module per
// command group (machine.ts, agent.ts, install.ts, fleet.ts) sharing one
// CommandContext (context.ts: the lazily made client, deadlines, failures).

/** The bmctl program, ready to parse. */
export function bmctlProgram(): Command {
  const program = new Command(NAME)
    .description("Operate the bare-metal agent callback service over its internal (mTLS) listener.")
    .configureOutput({ outputError: (str, write) => write(str.trim().split("\n")[0] + "\n") });
  addGlobalFlags(program);
  const ctx = commandContext(program);
  addMachineCommands(program, ctx);
  addAgentCommands(program, ctx);
  addInstallCommands(program, ctx);
  addFleetCommands(program, ctx);
  return program;
}
