import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";

// How many cores this process may really use. Node 20's
// os.availableParallelism() counts the CPUs the process may run on (its
// affinity mask) but not a container's CPU quota: libuv 1.46 does not read
// cgroups. A server given 2 CPUs' worth of quota on a 32-core host would
// otherwise size itself for 32 (four agent listener threads, each a V8 heap,
// on two cores' worth of time). The quota is the cgroup's: v2's cpu.max
// ("200000 100000": 2 cores; "max 100000": none), or v1's cpu.cfs_quota_us
// over cpu.cfs_period_us (-1: none), read in the process's own cgroup only:
// a quota set on a parent (a systemd slice's CPUQuota=) is not seen; in a
// container, the container's own cgroup is what carries it.

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

function read(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/**
 * The CPU quota of this process's cgroup, in cores (undefined: none or not
 * readable). Inside a container the cgroup file system is mounted at the
 * container's own cgroup, so the path from /proc/self/cgroup may not exist
 * under the mount: then the mount's root is the cgroup.
 */
export function cgroupQuotaCores(root = "/sys/fs/cgroup", self = read("/proc/self/cgroup") ?? ""): number | undefined {
  const { v2, v1Cpu } = cgroupPaths(self);
  if (v2 !== undefined) {
    const quota = read(`${root}${v2}/cpu.max`) ?? read(`${root}/cpu.max`);
    if (quota !== undefined) return cpuMaxCores(quota);
  }
  if (v1Cpu !== undefined) {
    for (const dir of [`${root}/cpu${v1Cpu}`, `${root}/cpu`, `${root}/cpu,cpuacct${v1Cpu}`, `${root}/cpu,cpuacct`]) {
      const quota = read(`${dir}/cpu.cfs_quota_us`);
      const period = read(`${dir}/cpu.cfs_period_us`);
      if (quota !== undefined && period !== undefined) return quotaCores(Number(quota), Number(period));
    }
  }
  return undefined;
}

/** Cores this process may use: its affinity's, capped by its cgroup's CPU quota. */
export function usableCores(): number {
  const cores = availableParallelism();
  return Math.min(cores, cgroupQuotaCores() ?? cores);
}
