import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEV_CERT_FILES } from "../../lib/certs.js";

/** Where `npm start` keeps its development PKI, relative to the repository. */
export const DEV_CERTS_DIR = join(".bmaas-dev", "certs");

/**
 * The development certificates of `npm start`: searched from the working
 * directory upwards, then in this package's own checkout, so that bmctl works
 * with no flags from anywhere inside the repository or through npx.
 */
export function findDevCerts(): string | undefined {
  const has = (dir: string) => existsSync(join(dir, DEV_CERTS_DIR, DEV_CERT_FILES.caCert));
  for (let dir = process.cwd(); ; dir = dirname(dir)) {
    if (has(dir)) return join(dir, DEV_CERTS_DIR);
    if (dirname(dir) === dir) break;
  }
  // dist/cmd/private/dev-certs.js (or cmd/private/dev-certs.ts) → package root.
  const here = dirname(fileURLToPath(import.meta.url));
  for (const root of [resolve(here, "../../.."), resolve(here, "../..")]) {
    if (has(root)) return join(root, DEV_CERTS_DIR);
  }
  return undefined;
}
