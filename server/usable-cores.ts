import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";

// How many cores this process may really use. Node 20's
// os.availableParallelism() counts the CPUs the process may run on (its
// affinity mask) but not a container's CPU quota: libuv 1.46 does not read
// cgroups. A server given 2 CPUs' worth of quota on a 32-core host would
// otherwise size itself for 32 (four agent listener threads, each a V8 heap,
// on two cores' worth of time). The quota is the cgroup's: v2's cpu.max
// ("200000 100000": 2 cores; "max 100000": none), or v1's cpu.cfs_quota_us
// over cpu.cfs_period_us (-1: none). A quota on any ancestor caps the cgroups
// under it (a systemd slice's CPUQuota= caps every service in the slice), so
// the tightest one on the way from the process's cgroup to the root counts;
// in a container, the container's own cgroup is the mount's root.

/** Cores a quota allows (rounded up: 1.5 cores' worth runs on 2), undefined when unlimited or unreadable. */
export function quotaCores(quotaUs: number, periodUs: number): number | undefined {
  if (!Number.isFinite(quotaUs) || !Number.isFinite(periodUs) || quotaUs <= 0 || periodUs <= 0) return undefined;
  return Math.max(1, Math.ceil(quotaUs / periodUs));
}

/** The quota in cgroup v2's cpu.max ("QUOTA PERIOD" or "max PERIOD"). */
export function cpuMaxCores(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === "max") return undefined;
  return quotaCores(Number(quota), Number(period ?? 100_000));
}

/** The process's cgroup paths from /proc/self/cgroup: v2's ("0::/path") and v1's cpu controller's. */
export function cgroupPaths(text: string): { v2?: string; v1Cpu?: string } {
  const paths: { v2?: string; v1Cpu?: string } = {};
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, id, controllers = "", path = ""] = m;
    if (id === "0" && controllers === "") paths.v2 = path;
    else if (controllers.split(",").includes("cpu")) paths.v1Cpu = path;
  }
  return paths;
}

/** A cgroup and its ancestors, deepest first: "/a/b" → ["/a/b", "/a", ""] (the last is the mount's root). */
export function ancestry(path: string): string[] {
  const parts = path.split("/").filter(Boolean);
  return [...parts.map((_, i) => `/${parts.slice(0, parts.length - i).join("/")}`), ""];
}

/** The smallest of the quotas found (undefined: all unlimited); null when no quota file was found at all. */
function tightest(found: readonly (number | undefined | null)[]): number | undefined | null {
  const files = found.filter((q) => q !== null);
  if (files.length === 0) return null;
  const limits = files.filter((q): q is number => q !== undefined);
  return limits.length > 0 ? Math.min(...limits) : undefined;
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/**
 * The tightest CPU quota of this process's cgroup and its ancestors, in cores
 * (undefined: none or not readable). Inside a container the cgroup file
 * system is mounted at the container's own cgroup, so the path from
 * /proc/self/cgroup may not exist under the mount: the mount's root, the last
 * ancestor looked at, is then the container's cgroup.
 */
export function cgroupQuotaCores(root = "/sys/fs/cgroup", self = read("/proc/self/cgroup") ?? ""): number | undefined {
  const { v2, v1Cpu } = cgroupPaths(self);
  if (v2 !== undefined) {
    const found = tightest(
      ancestry(v2).map((dir) => {
        const quota = read(`${root}${dir}/cpu.max`);
        return quota === undefined ? null : cpuMaxCores(quota);
      }),
    );
    if (found !== null) return found;
  }
  if (v1Cpu !== undefined) {
    for (const mount of [`${root}/cpu`, `${root}/cpu,cpuacct`]) {
      const found = tightest(
        ancestry(v1Cpu).map((dir) => {
          const quota = read(`${mount}${dir}/cpu.cfs_quota_us`);
          const period = read(`${mount}${dir}/cpu.cfs_period_us`);
          return quota === undefined || period === undefined ? null : quotaCores(Number(quota), Number(period));
        }),
      );
      if (found !== null) return found;
    }
  }
  return undefined;
}

/** Cores this process may use: its affinity's, capped by its cgroup's CPU quota. */
export function usableCores(): number {
  const cores = availableParallelism();
  return Math.min(cores, cgroupQuotaCores() ?? cores);
}
