import { InvalidArgumentError, Option } from "commander";

// Flag parsers shared by bmaas-server, bmaas-agent and bmctl, so that every
// command accepts and refuses the same spellings with the same messages.

/** The longest delay Node's timers honour: a larger one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** MAX_TIMER_MS in whole seconds (2147483): the bound of every seconds flag that becomes a timer. */
export const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

const TRUE = new Set(["true", "1", "yes", "on"]);
const FALSE = new Set(["false", "0", "no", "off"]);

/**
 * Parses a boolean spelled true/false, 1/0, yes/no or on/off (any case,
 * surrounding blanks ignored); anything else, the empty string included,
 * is refused.
 */
export function parseBoolean(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (TRUE.has(t)) return true;
  if (FALSE.has(t)) return false;
  throw new InvalidArgumentError("must be true or false (also 1/0, yes/no, on/off)");
}

/**
 * A boolean flag with an environment fallback whose value counts.
 *
 * Commander's own boolean options with .env() only check that the variable is
 * set and ignore its value (commander 14, Command._parseOptionsEnv), so
 * NAME=false would turn the flag on. This option takes an optional value
 * instead, which commander does pass on from the environment:
 *
 *   --flag              true
 *   --flag=false        false (also --flag false, --flag no, …)
 *   NAME=off            false; NAME=yes true; NAME=maybe or NAME= is an error
 *
 * A flag on the command line wins over the variable. Because the value is
 * optional, a bare word right after the flag is read as its value: use the
 * flag last or as --flag=true before a positional argument (no command using
 * it today has positional arguments).
 */
export function booleanOption(flags: string, description: string, envName: string): Option {
  return new Option(`${flags} [boolean]`, description).env(envName).argParser(parseBoolean);
}

export interface NumberArgOptions {
  min: number;
  max?: number;
  integer?: boolean;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A commander argument parser for a number in [min, max] (an integer with
 * integer: true). Decimal notation only: "", "0x10" and "Infinity" are
 * refused. The message names the range; commander prefixes the flag and value:
 *   error: option '--interval <seconds>' argument '9e9' is invalid. must be a number from 0.1 to 2147483
 */
export function numberArg({ min, max = Infinity, integer = false }: NumberArgOptions): (text: string) => number {
  const what = integer ? "an integer" : "a number";
  const message = max < Infinity ? `must be ${what} from ${min} to ${max}` : `must be ${what} of at least ${min}`;
  return (text: string): number => {
    const t = text.trim();
    const n = Number(t);
    if (!DECIMAL.test(t) || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(message);
    }
    return n;
  };
}

/** A parser for a number of seconds from min that becomes a timer: at most MAX_TIMER_SECONDS. */
export function secondsArg(min: number): (text: string) => number {
  return numberArg({ min, max: MAX_TIMER_SECONDS });
}
