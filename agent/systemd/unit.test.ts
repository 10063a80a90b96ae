import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const UNIT = join(import.meta.dirname, "bmaas-agent.service");
const hasAnalyze = spawnSync("systemd-analyze", ["--version"]).status === 0;

describe("the agent's systemd unit", () => {
  const text = readFileSync(UNIT, "utf8");

  it("sandboxes the agent but leaves /proc and /sys readable", () => {
    expect(text).toMatch(/^ProtectSystem=strict$/m);
    expect(text).toMatch(/^ReadWritePaths=\/var\/lib\/bmaas-agent$/m);
    // These would hide the hardware the report reads.
    expect(text).not.toMatch(/^ProcSubset=pid$/m);
    expect(text).not.toMatch(/^ProtectProc=invisible$/m);
    expect(text).not.toMatch(/^PrivateDevices=yes$/m);
    expect(text).toMatch(/^ExecStart=.*bmaas-agent\.js run$/m);
  });

  it.skipIf(!hasAnalyze)("rates as OK exposure by systemd-analyze security", () => {
    const out = execFileSync("systemd-analyze", ["security", "--offline=yes", UNIT], { encoding: "utf8" });
    const level = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(out)?.[1]);
    expect(level).toBeLessThan(5.5);
  });
});
