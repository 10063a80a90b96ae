import type { Command } from "commander";
import type { TlsMaterial } from "../private/diagnose.js";
import { fail } from "../private/fail.js";
import { DEADLINE_MS, NAME, operatorClient, tlsMaterial, type GlobalFlags, type Operator } from "./client.js";
import { explain } from "./explain.js";

/** What every command group needs from the program around it. */
export interface CommandContext {
  /** The operator client, made on first use from the global flags (one per run). */
  operator(): Operator;
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
  const operator = (): Operator => {
    const flags = program.opts<GlobalFlags>();
    tls ??= tlsMaterial(flags);
    return (client ??= operatorClient(flags.server, tls));
  };
  return {
    operator,
    deadline: () => ({ deadline: Date.now() + DEADLINE_MS }),
    run: (fn) => async (...args) => {
      try {
        await fn(...args);
      } catch (e) {
        fail(NAME, await explain(e, program.opts<GlobalFlags>(), tls));
      } finally {
        client?.close();
      }
    },
  };
}
