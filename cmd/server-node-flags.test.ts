import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SERVER_NODE_FLAGS, SERVER_SHEBANG } from "./server-node-flags.js";

describe("bmaas-server's node flags", () => {
  it("are the ones its shebang runs node with", () => {
    const firstLine = readFileSync(join(import.meta.dirname, "bmaas-server.ts"), "utf8").split("\n")[0];
    expect(firstLine).toBe(SERVER_SHEBANG);
  });

  it("give the young generation room to grow past Node's default", () => {
    // Allocate with many survivors (a ring of 200,000 live objects) and report
    // the largest new space seen: Node 20's default stops at 2 x 16 MB.
    const script = `
      const v8 = require("node:v8");
      const ring = new Array(200000); let max = 0;
      for (let i = 0; i < 2e6; i++) {
        ring[i % 200000] = { a: i, b: [i] };
        if (i % 100000 === 0) max = Math.max(max, v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size);
      }
      process.stdout.write(String(max));`;
    const withDefaults = Number(execFileSync(process.execPath, ["-e", script]));
    const withFlags = Number(execFileSync(process.execPath, [...SERVER_NODE_FLAGS, "-e", script]));
    expect(withDefaults).toBeLessThanOrEqual(32 * 2 ** 20);
    expect(withFlags).toBeGreaterThan(withDefaults);
  });
});
