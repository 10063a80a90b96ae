import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

// The C addons in native/ (binding.gyp), built by node-gyp at `npm install`
// into build/Release/. Loaded from the sources (tests run them from the
// repository) or from dist/, one directory deeper.

const require = createRequire(import.meta.url);

const loaded = new Map<string, { addon?: unknown; error?: string }>();

/**
 * The addon `name`, or why it cannot be had (not built: no compiler at
 * install time). Looked for once per process; later calls are a map lookup,
 * so a hot path may call it every time.
 */
export function loadNativeAddon<T>(name: string): { addon?: T; error?: string } {
  let found = loaded.get(name);
  if (!found) loaded.set(name, (found = find(name)));
  return found as { addon?: T; error?: string };
}

function find(name: string): { addon?: unknown; error?: string } {
  const candidates = [`../build/Release/${name}.node`, `../../build/Release/${name}.node`];
  const path = candidates.map((c) => fileURLToPath(new URL(c, import.meta.url))).find((p) => existsSync(p));
  if (!path) return { error: `native addon ${name} was not built (npm install runs node-gyp; npm run build:native)` };
  try {
    return { addon: require(path) as unknown };
  } catch (err) {
    return { error: `native addon ${name} did not load: ${(err as Error).message}` };
  }
}
