import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ancestry, cgroupPaths, cgroupQuotaCores, cpuMaxCores, quotaCores, usableCores } from "./usable-cores.js";

describe("usable cores", () => {
  const roots: string[] = [];
  afterEach(() => roots.splice(0).forEach((r) => rmSync(r, { recursive: true, force: true })));
  /** A cgroup file system laid out as files, as /sys/fs/cgroup would be. */
  function fakeCgroupFs(files: Record<string, string>): string {
    const root = mkdtempSync(join(tmpdir(), "cgroup-"));
    roots.push(root);
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(root, path, ".."), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    return root;
  }

  it("reads a quota as cores, rounded up, and no quota as none", () => {
    expect(cpuMaxCores("200000 100000\n")).toBe(2);
    expect(cpuMaxCores("150000 100000")).toBe(2);
    expect(cpuMaxCores("50000 100000")).toBe(1);
    expect(cpuMaxCores("max 100000\n")).toBeUndefined();
    expect(cpuMaxCores("")).toBeUndefined();
    expect(quotaCores(-1, 100_000)).toBeUndefined();
    expect(quotaCores(400_000, 100_000)).toBe(4);
    expect(quotaCores(Number("garbage"), 100_000)).toBeUndefined();
  });

  it("finds the process's v2 cgroup and its v1 cpu controller's", () => {
    expect(cgroupPaths("0::/system.slice/bmaas.service\n")).toEqual({ v2: "/system.slice/bmaas.service" });
    expect(cgroupPaths("12:memory:/a\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/\n")).toEqual({ v1Cpu: "/docker/abc", v2: "/" });
    expect(cgroupPaths("garbage\n")).toEqual({});
  });

  it("caps by a v2 quota, in the process's cgroup or at the mount's root (inside a container)", () => {
    const own = fakeCgroupFs({ "system.slice/bmaas.service/cpu.max": "300000 100000\n", "cpu.max": "max 100000\n" });
    expect(cgroupQuotaCores(own, "0::/system.slice/bmaas.service\n")).toBe(3);
    const container = fakeCgroupFs({ "cpu.max": "200000 100000\n" });
    expect(cgroupQuotaCores(container, "0::/kubepods/pod1/c1\n")).toBe(2);
    const unlimited = fakeCgroupFs({ "cpu.max": "max 100000\n" });
    expect(cgroupQuotaCores(unlimited, "0::/\n")).toBeUndefined();
  });

  it("caps by the tightest quota of the cgroup's ancestors (a systemd slice's CPUQuota=)", () => {
    expect(ancestry("/system.slice/bmaas.service")).toEqual(["/system.slice/bmaas.service", "/system.slice", ""]);
    expect(ancestry("/")).toEqual([""]);
    const slice = fakeCgroupFs({ "bmaas.slice/cpu.max": "200000 100000\n", "bmaas.slice/bmaas.service/cpu.max": "max 100000\n", "cpu.max": "max 100000\n" });
    expect(cgroupQuotaCores(slice, "0::/bmaas.slice/bmaas.service\n")).toBe(2);
    const both = fakeCgroupFs({ "bmaas.slice/cpu.max": "200000 100000\n", "bmaas.slice/bmaas.service/cpu.max": "400000 100000\n" });
    expect(cgroupQuotaCores(both, "0::/bmaas.slice/bmaas.service\n")).toBe(2);
    const tighterInside = fakeCgroupFs({ "bmaas.slice/cpu.max": "800000 100000\n", "bmaas.slice/bmaas.service/cpu.max": "100000 100000\n" });
    expect(cgroupQuotaCores(tighterInside, "0::/bmaas.slice/bmaas.service\n")).toBe(1);
    const v1 = fakeCgroupFs({
      "cpu/docker/cpu.cfs_quota_us": "300000\n",
      "cpu/docker/cpu.cfs_period_us": "100000\n",
      "cpu/docker/abc/cpu.cfs_quota_us": "-1\n",
      "cpu/docker/abc/cpu.cfs_period_us": "100000\n",
    });
    expect(cgroupQuotaCores(v1, "4:cpu,cpuacct:/docker/abc\n")).toBe(3);
  });

  it("caps by a v1 quota, -1 being none", () => {
    const limited = fakeCgroupFs({ "cpu/docker/abc/cpu.cfs_quota_us": "250000\n", "cpu/docker/abc/cpu.cfs_period_us": "100000\n" });
    expect(cgroupQuotaCores(limited, "4:cpu,cpuacct:/docker/abc\n")).toBe(3);
    const none = fakeCgroupFs({ "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n" });
    expect(cgroupQuotaCores(none, "4:cpu,cpuacct:/docker/abc\n")).toBeUndefined();
    expect(cgroupQuotaCores(fakeCgroupFs({}), "4:cpu:/x\n")).toBeUndefined();
  });

  it("is this process's cores, never more than its affinity allows", () => {
    const cores = usableCores();
    expect(cores).toBeGreaterThanOrEqual(1);
    expect(cores).toBeLessThanOrEqual(availableParallelism());
  });
});
