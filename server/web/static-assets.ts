import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { STYLE_CSS } from "./static/style.js";

// The script and the stylesheet, read once. app.js is plain JavaScript
// (checked by tsc through // @ts-check, copied into dist/ by allowJs), so the
// file a browser gets is the file in the repository.

export interface Asset {
  type: string;
  body: Buffer;
  etag: string;
}

function asset(type: string, body: Buffer): Asset {
  return { type, body, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` };
}

export function loadAssets(): Map<string, Asset> {
  return new Map([
    // tsc's build appends a source map reference to a map nobody serves.
    ["/static/app.js", asset("text/javascript; charset=utf-8", Buffer.from(readFileSync(new URL("./static/app.js", import.meta.url), "utf8").replace(/\n\/\/# sourceMappingURL=.*\n?$/, "\n")))],
    ["/static/style.css", asset("text/css; charset=utf-8", Buffer.from(STYLE_CSS))],
  ]);
}
