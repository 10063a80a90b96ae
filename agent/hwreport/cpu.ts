import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CPUSchema } from "../../gen/cloud/agent/api/hwreport_pb.js";
import { join, MAX_TABLE_BYTES, readText, type Roots, type Warnings } from "./roots.js";

type Cpu = MessageInitShape<typeof CPUSchema>;

/** One "processor" block of /proc/cpuinfo as key → value. */
function blocks(text: string): Map<string, string>[] {
  return text
    .split(/\n\s*\n/)
    .map((block) => {
      const fields = new Map<string, string>();
      for (const line of block.split("\n")) {
        const i = line.indexOf(":");
        if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
      }
      return fields;
    })
    .filter((f) => f.has("processor"));
}

/**
 * CPU packages from /proc/cpuinfo: per physical id, the vendor and model,
 * x86 family/model/stepping, cores (distinct core ids) and hardware threads
 * (logical processors).
 */
export function readCpus(roots: Roots, warnings: Warnings): Cpu[] {
  const text = readText(join(roots.proc, "cpuinfo"), MAX_TABLE_BYTES);
  if (text === undefined) {
    warnings.add("cpu: /proc/cpuinfo unreadable");
    return [];
  }
  const procs = blocks(text);
  if (procs.length === 0) {
    warnings.add("cpu: no processors in /proc/cpuinfo");
    return [];
  }
  const packages = new Map<string, Map<string, string>[]>();
  for (const p of procs) {
    const id = p.get("physical id") ?? "0";
    packages.set(id, [...(packages.get(id) ?? []), p]);
  }
  if (!procs[0]!.has("physical id")) warnings.add("cpu: no physical id in /proc/cpuinfo; counting all processors as one package");

  return [...packages.entries()]
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([, threads]) => {
      const first = threads[0]!;
      const vendor = first.get("vendor_id") ?? first.get("CPU implementer") ?? "";
      const coreIds = new Set(threads.map((t) => t.get("core id")).filter((c) => c !== undefined));
      const cpu: Cpu = {
        vendor,
        model: first.get("model name") ?? "",
        hardwareThreads: threads.length,
        // Without core ids (some VMs), every thread is its own core.
        cores: coreIds.size > 0 ? coreIds.size : threads.length,
      };
      const family = Number(first.get("cpu family"));
      const model = Number(first.get("model"));
      const stepping = Number(first.get("stepping"));
      if (vendor === "GenuineIntel" || vendor === "AuthenticAMD" || vendor === "HygonGenuine" || vendor === "CentaurHauls") {
        if ([family, model, stepping].every(Number.isInteger)) {
          cpu.architecture = { case: "x8664", value: { family, model, stepping } };
        } else {
          warnings.add("cpu: x86 family/model/stepping missing from /proc/cpuinfo");
        }
      }
      return cpu;
    });
}
