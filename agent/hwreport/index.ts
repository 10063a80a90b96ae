import { create } from "@bufbuild/protobuf";
import { NodeSchema } from "../../gen/cloud/agent/api/hwreport_pb.js";
import { AgentHardwareReportSchema, type AgentHardwareReport } from "../../gen/cloud/bmaas/server/api/agent_pb.js";
import { cleanMessage, cleanWarnings } from "../sanitize.js";
import { readBlockDevices } from "./block.js";
import { readCpus } from "./cpu.js";
import { readDmiIdentity } from "./dmi.js";
import { readMemoryAndFirmware } from "./memory-firmware.js";
import { readNetworkInterfaces } from "./net.js";
import { SYSTEM_ROOTS, Warnings, type Roots } from "./roots.js";

export { SYSTEM_ROOTS, type Roots } from "./roots.js";

/**
 * The hardware report of the machine under roots. Never throws for missing
 * or unreadable data: each gap becomes a warning in the report. Every string
 * is cleaned (no NUL or other control characters, valid UTF-8, at most 256
 * characters), lists are cut to 256 entries and warnings to 64 of at most 512
 * characters, with a warning for what was cut (see ../sanitize.ts).
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
  const hw = create(AgentHardwareReportSchema, {
    report: {
      ...dmi,
      ...mem,
      cpu: guard("cpu", [], () => readCpus(roots, warnings)),
      blockDevice: guard("block", [], () => readBlockDevices(roots, warnings)),
      networkInterface: guard("net", [], () => readNetworkInterfaces(roots, warnings)),
    },
  });
  // What was cut goes first, so that the cap on warnings never hides it.
  const cuts: string[] = [];
  cleanMessage(NodeSchema, hw.report!, (w) => cuts.push(w));
  hw.warning = cleanWarnings([...cuts, ...warnings.list]);
  return hw;
}
