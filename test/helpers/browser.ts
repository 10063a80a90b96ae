import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";

// A real headless Chromium (Debian's package, driven by playwright-core) for
// the web view's tests. Without one the browser tests are skipped with a
// notice, except in CI (.ci/run installs it), where that is a failure.

const ROOT = join(import.meta.dirname, "..", "..");
export const ARTIFACTS = join(ROOT, "test-artifacts");

export const chromiumPath: string | undefined = process.env.CHROMIUM_PATH ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

if (!chromiumPath) {
  if (process.env.CI) throw new Error("no Chromium: apt-get install chromium (or set CHROMIUM_PATH)");
  process.stderr.write("browser tests skipped: no Chromium (apt-get install chromium, or set CHROMIUM_PATH)\n");
}

export function launchBrowser(): Promise<Browser> {
  // As root (CI, containers) Chromium's sandbox cannot start.
  return chromium.launch({ executablePath: chromiumPath!, args: ["--no-sandbox"] });
}

/** Console errors, failed page scripts and CSP violations of a page, as they happen. */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  return errors;
}

/** Writes a full-page screenshot under test-artifacts/ (git-ignored). */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
