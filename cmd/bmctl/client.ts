import { Option, type Command } from "commander";
import { join } from "node:path";
import { DEV_CERT_FILES } from "../../lib/dev-cert-files.js";
import { readNamedFile } from "../../lib/read-file.js";
import { DEV_CERTS_HELP, findDevCerts } from "../private/dev-certs.js";
import type { TlsMaterial } from "../private/diagnose.js";
import { fail } from "../private/fail.js";

// What bmctl needs to reach the server: its global flags and the TLS material
// they name (or npm start's development certificates). The client itself is
// operator-client.ts, loaded on the first call.

export const NAME = "bmctl";
/** Every unary call's deadline. */
export const DEADLINE_MS = 15_000;

export interface GlobalFlags {
  server: string;
  ca?: string;
  cert?: string;
  key?: string;
  certsDir?: string;
}

/** Adds the flags every command shares (server and TLS material) to the root command. */
export function addGlobalFlags(program: Command): Command {
  return program
    .addOption(new Option("--server <addr>", "internal listener").env("BMCTL_SERVER").default("localhost:4242"))
    .addOption(new Option("--ca <file>", "CA that signed the server certificate").env("BMCTL_CA"))
    .addOption(new Option("--cert <file>", "operator client certificate").env("BMCTL_CERT"))
    .addOption(new Option("--key <file>", "key of --cert").env("BMCTL_KEY"))
    .addOption(new Option("--certs-dir <dir>", "directory with ca.pem, operator.pem, operator-key.pem").env("BMCTL_CERTS_DIR"))
    .addHelpText("after", `\nWith no flags, bmctl uses the development certificates and listener of \`npm start\`.\n${DEV_CERTS_HELP}\n\nExample:\n  bmctl machine list --heartbeat stale`);
}

/** The file a flag names, or a one-line failure (exit 2). */
export function readFlagFile(flag: string, file: string): Buffer {
  try {
    return readNamedFile(flag, file);
  } catch (e) {
    fail(NAME, (e as Error).message, 2);
  }
}

/** Explicit files win; otherwise a certificate directory; otherwise npm start's. */
export function tlsMaterial(flags: GlobalFlags): TlsMaterial {
  const dir = flags.certsDir ?? (flags.ca && flags.cert && flags.key ? undefined : findDevCerts());
  const pick = (flag: string, explicit: string | undefined, file: string) => {
    if (explicit) return readFlagFile(flag, explicit);
    if (!dir) fail(NAME, `no ${flag} given and no development certificates in ./.bmaas-dev/certs or bmctl's checkout (run npm start first, or pass --ca, --cert and --key)`, 2);
    return readFlagFile(flag, join(dir, file));
  };
  return {
    ca: pick("--ca", flags.ca, DEV_CERT_FILES.caCert),
    key: pick("--key", flags.key, DEV_CERT_FILES.operatorKey),
    cert: pick("--cert", flags.cert, DEV_CERT_FILES.operatorCert),
  };
}
