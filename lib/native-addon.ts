import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

// The C addons in native/ (binding.gyp), built by node-gyp at `npm install`
// into build/Release/. Loaded from the sources (tests run them from the
// repository) or from dist/, one directory deeper.

const require = createRequire(import.meta.url);

/** The addon `name`, or why it cannot be had (not built: no compiler at install time). */
export function loadNativeAddon<T>(name: string): { addon?: T; error?: string } {
  const candidates = [`../build/Release/${name}.node`, `../../build/Release/${name}.node`];
  const path = candidates.map((c) => fileURLToPath(new URL(c, import.meta.url))).find((p) => existsSync(p));
  if (!path) return { error: `native addon ${name} was not built (npm install runs node-gyp; npm run build:native)` };
  try {
    return { addon: require(path) as T };
  } catch (err) {
    return { error: `native addon ${name} did not load: ${(err as Error).message}` };
  }
}
