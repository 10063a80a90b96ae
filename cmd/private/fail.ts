/** Prints one line to stderr and exits non-zero: how every command reports failure. */
export function fail(command: string, message: string, code = 1): never {
  process.stderr.write(`${command}: ${message.split("\n")[0]}\n`);
  process.exit(code);
}
