import { Command, CommanderError, Option } from "commander";
import { afterEach, describe, expect, it } from "vitest";
import { booleanOption, MAX_TIMER_MS, MAX_TIMER_SECONDS, numberArg, parseBoolean } from "./flags.js";

const ENV = "BMAAS_FLAGS_TEST_BOOL";
afterEach(() => {
  delete process.env[ENV];
});

/** Parses argv with env, as a command would; returns the options or the one-line error. */
function parse(option: Option, argv: string[], env?: string): { value?: unknown; error?: string } {
  if (env === undefined) delete process.env[ENV];
  else process.env[ENV] = env;
  let error = "";
  const cmd = new Command("t")
    .exitOverride()
    .configureOutput({ writeErr: (s) => (error += s), writeOut: () => {} })
    .addOption(option);
  try {
    cmd.parse(argv, { from: "user" });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    return { error: error.trim() };
  }
  return { value: cmd.opts()["flag"] };
}

describe("booleanOption", () => {
  const opt = () => booleanOption("--flag", "a switch", ENV);

  it("commander's own boolean .env() counts any value as set (why booleanOption exists)", () => {
    expect(parse(new Option("--flag").env(ENV), [], "false").value).toBe(true);
  });

  it("reads true/false, 1/0, yes/no, on/off from the environment, in any case", () => {
    for (const v of ["true", "TRUE", "1", "yes", "On", " yes "]) expect(parse(opt(), [], v), v).toEqual({ value: true });
    for (const v of ["false", "False", "0", "no", "OFF"]) expect(parse(opt(), [], v), v).toEqual({ value: false });
    expect(parse(opt(), []).value).toBeUndefined();
  });

  it("refuses any other value with one line naming the variable", () => {
    for (const v of ["", "maybe", "2", "enabled", "tru"]) {
      const r = parse(opt(), [], v);
      expect(r.value, v).toBeUndefined();
      expect(r.error!.split("\n"), v).toHaveLength(1);
      expect(r.error).toMatch(new RegExp(`from env '${ENV}' is invalid\\. must be true or false`));
    }
  });

  it("is a plain switch on the command line, takes --flag=false, and wins over the environment", () => {
    expect(parse(opt(), ["--flag"]).value).toBe(true);
    expect(parse(opt(), ["--flag=false"]).value).toBe(false);
    expect(parse(opt(), ["--flag", "no"]).value).toBe(false);
    expect(parse(opt(), ["--flag"], "false").value).toBe(true);
    expect(parse(opt(), ["--flag=off"], "true").value).toBe(false);
    expect(parse(opt(), ["--flag=sure"]).error).toMatch(/argument 'sure' is invalid\. must be true or false/);
  });

  it("parseBoolean alone", () => {
    expect(parseBoolean("YES")).toBe(true);
    expect(() => parseBoolean("nope")).toThrow(/must be true or false/);
  });
});

describe("numberArg", () => {
  it("accepts numbers in range and refuses others with the range in the message", () => {
    const seconds = numberArg({ min: 1, max: MAX_TIMER_SECONDS });
    expect(seconds("1")).toBe(1);
    expect(seconds("2.5")).toBe(2.5);
    expect(seconds(String(MAX_TIMER_SECONDS))).toBe(2147483);
    for (const bad of ["0", "2147484", "", " ", "abc", "0x10", "Infinity", "NaN", "1e10"]) {
      expect(() => seconds(bad), bad).toThrow("must be a number from 1 to 2147483");
    }
    expect(MAX_TIMER_SECONDS * 1000).toBeLessThanOrEqual(MAX_TIMER_MS);
  });

  it("integers only with integer: true; no upper bound without max", () => {
    const n = numberArg({ min: 1, integer: true });
    expect(n("1000000000000")).toBe(1e12);
    expect(() => n("1.5")).toThrow("must be an integer of at least 1");
    expect(() => n("0")).toThrow("must be an integer of at least 1");
    expect(numberArg({ min: 0 })("0")).toBe(0);
  });

  it("its message reaches the user through commander as one line", () => {
    const r = parse(new Option("--flag <n>").argParser(numberArg({ min: 1, max: 10, integer: true })), ["--flag", "11"]);
    expect(r.error).toBe("error: option '--flag <n>' argument '11' is invalid. must be an integer from 1 to 10");
  });
});
