import type { Command } from "commander";
import type { TlsMaterial } from "../private/diagnose.js";
import { fail } from "../private/fail.js";
import { DEADLINE_MS, NAME, tlsMaterial, type GlobalFlags } from "./client.js";
import type { Operator } from "./operator-client.js";

// What the command groups share. Operators run bmctl in loops, so a command
// loads what it uses when it uses it: grpc-js and the generated descriptors on
// the first call (operator()), the failure explanations only on a failure.

/** What every command group needs from the program around it. */
export interface CommandContext {
  /** The operator client, made on first use from the global flags (one per run). */
  operator(): Promise<Operator>;
  /** Call options with bmctl's deadline from now. */
  deadline(): { deadline: number };
  /**
   * Wraps an action: commander passes it its parsed arguments; a failure
   * becomes one explained line and a non-zero exit; the connection is closed
   * either way.
   */
  run<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void>;
}

/** Help text showing one example invocation. */
export const example = (text: string): string => `\nExample:\n  ${text}`;

/** Prints one line (or block) of a command's output to stdout. */
export const print = (text: string): void => {
  process.stdout.write(text + "\n");
};

/** The context of program, whose global flags it reads when a command runs. */
export function commandContext(program: Command): CommandContext {
  let client: Operator | undefined;
  let tls: TlsMaterial | undefined;
  const operator = async (): Promise<Operator> => {
    const flags = program.opts<GlobalFlags>();
    tls ??= tlsMaterial(flags);
    const { operatorClient } = await import("./operator-client.js");
    return (client ??= operatorClient(flags.server, tls));
  };
  return {
    operator,
    deadline: () => ({ deadline: Date.now() + DEADLINE_MS }),
    run: (fn) => async (...args) => {
      try {
        await fn(...args);
      } catch (e) {
        const { explain } = await import("./explain.js");
        fail(NAME, await explain(e, program.opts<GlobalFlags>(), tls));
      } finally {
        client?.close();
      }
    },
  };
}
