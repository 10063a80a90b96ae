import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// Worker threads run a module file. Built, that is the .js beside its caller
// in dist/; run from the TypeScript sources (vitest, tsx), only the .ts
// exists, and a worker does not inherit the parent's TypeScript loader.

/** file: URL of tsx's ESM register API ("tsx/esm/api", import condition). */
function tsxEsmApi(): string {
  const req = createRequire(import.meta.url);
  const pkgPath = req.resolve("tsx/package.json");
  const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as { exports?: { [k: string]: unknown } };
  const entry = pkg.exports?.["./esm/api"];
  const imp = entry !== null && typeof entry === "object" ? (entry as { import?: unknown }).import : undefined;
  const file = typeof imp === "string" ? imp : imp !== null && typeof imp === "object" ? (imp as { default?: unknown }).default : undefined;
  if (typeof file !== "string") throw new Error("cannot find tsx's ESM API to run a worker thread from TypeScript sources");
  return pathToFileURL(join(dirname(pkgPath), file)).href;
}

/**
 * The entry of a worker thread whose module is `js` (a URL ending in .js
 * beside the caller): that file when built, or else a bootstrap that
 * registers tsx in the worker and imports the .ts source. (On Node 20 a
 * worker's execArgv ["--import", "tsx"] does not apply tsx's hooks to the
 * worker's own entry module, hence the bootstrap.) tsx is a devDependency:
 * dist/ never needs it.
 */
export function workerEntry(js: URL): URL {
  if (existsSync(fileURLToPath(js))) return js;
  const ts = new URL(js.href.replace(/\.js$/, ".ts"));
  const boot = `import { register } from ${JSON.stringify(tsxEsmApi())};\nregister();\nawait import(${JSON.stringify(ts.href)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(boot)}`);
}
