/**
 * text as one line fit for a terminal: its first line only, without control
 * characters (an escape sequence from a server or an agent cannot reach the
 * terminal), at most max characters.
 */
export function oneLine(text: string, max = 1000): string {
  const line = text.split(/\r?\n/)[0]!.replace(/[\x00-\x1f\x7f-\x9f]/g, "").trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** Prints one line to stderr and exits non-zero: how every command reports failure. */
export function fail(command: string, message: string, code = 1): never {
  process.stderr.write(`${command}: ${oneLine(message)}\n`);
  process.exit(code);
}
