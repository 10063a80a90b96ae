import { create } from "@bufbuild/protobuf";
import { AgentHardwareReportSchema, type AgentHardwareReport } from "../../gen/cloud/bmaas/server/api/agent_pb.js";
import { readBlockDevices } from "./block.js";
import { readCpus } from "./cpu.js";
import { readDmiIdentity } from "./dmi.js";
import { readMemoryAndFirmware } from "./memory-firmware.js";
import { readNetworkInterfaces } from "./net.js";
import { SYSTEM_ROOTS, Warnings, type Roots } from "./roots.js";

export { SYSTEM_ROOTS, type Roots } from "./roots.js";

/**
 * The hardware report of the machine under roots. Never throws for missing
 * or unreadable data: each gap becomes a warning in the report.
 */
export function collectHardwareReport(roots: Roots = SYSTEM_ROOTS): AgentHardwareReport {
  const warnings = new Warnings();
  const guard = <T>(what: string, fallback: T, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      warnings.add(`${what}: ${(e as Error).message}`);
      return fallback;
    }
  };
  const dmi = guard("dmi", { manufacturer: "", product: "", serialNumber: "" }, () => readDmiIdentity(roots, warnings));
  const mem = guard("memory", { memoryInstalledBytes: 0n, memoryUsableRatio: 0, efiSupport: 1 }, () => readMemoryAndFirmware(roots, warnings));
  return create(AgentHardwareReportSchema, {
    report: {
      ...dmi,
      ...mem,
      cpu: guard("cpu", [], () => readCpus(roots, warnings)),
      blockDevice: guard("block", [], () => readBlockDevices(roots, warnings)),
      networkInterface: guard("net", [], () => readNetworkInterfaces(roots, warnings)),
    },
    warning: warnings.list,
  });
}
