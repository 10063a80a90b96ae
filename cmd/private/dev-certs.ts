import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEV_CERT_FILES } from "../../lib/dev-cert-files.js";

/** Where `npm start` keeps its development PKI, relative to the repository. */
export const DEV_CERTS_DIR = join(".bmaas-dev", "certs");

/** Our package's name: how bmctl recognises its own checkout. */
const PACKAGE_NAME = "bmaas";

/** The root of the checkout bmctl runs from: the directory of its own package.json. */
function ownCheckout(): string | undefined {
  // dist/cmd/private/dev-certs.js (or cmd/private/dev-certs.ts) → package root.
  const here = dirname(fileURLToPath(import.meta.url));
  for (const root of [resolve(here, "../.."), resolve(here, "../../..")]) {
    try {
      const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { name?: unknown };
      if (pkg.name === PACKAGE_NAME) return root;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * The development certificates of `npm start`, looked for in exactly two
 * places: ./.bmaas-dev/certs in the working directory, then .bmaas-dev/certs
 * next to bmctl's own package.json (its checkout). Never in parent
 * directories: whoever can write to one (a shared /tmp, a home directory
 * above a checkout) could plant a CA and operator key there that bmctl would
 * then trust.
 */
export function findDevCerts(cwd: string = process.cwd()): string | undefined {
  const candidates = [resolve(cwd, DEV_CERTS_DIR)];
  const root = ownCheckout();
  if (root) candidates.push(join(root, DEV_CERTS_DIR));
  return candidates.find((dir) => existsSync(join(dir, DEV_CERT_FILES.caCert)));
}

/** For --help: where development certificates are looked for. */
export const DEV_CERTS_HELP = `It looks for those certificates only in ./${DEV_CERTS_DIR} (the working directory) and in
${DEV_CERTS_DIR} of its own checkout (next to its package.json), never in parent directories.`;
