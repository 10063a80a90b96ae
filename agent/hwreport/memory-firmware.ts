import { EFISupport } from "../../gen/cloud/agent/api/hwreport_pb.js";
import { exists, join, readBytes, readText, type Roots, type Warnings } from "./roots.js";
import { installedMemoryBytes, parseSmbios, uefiSupported, type SmbiosStructure } from "./smbios.js";

function smbios(roots: Roots, warnings: Warnings): SmbiosStructure[] | undefined {
  const table = readBytes(join(roots.sys, "firmware", "dmi", "tables", "DMI"));
  if (!table) {
    warnings.add("dmi: SMBIOS table unreadable (absent, or not running as root)");
    return undefined;
  }
  return parseSmbios(table);
}

/** MemTotal of /proc/meminfo in bytes. */
function memTotal(roots: Roots, warnings: Warnings): number | undefined {
  const text = readText(join(roots.proc, "meminfo"));
  const m = text && /^MemTotal:\s+(\d+)\s*kB/m.exec(text);
  if (!m) {
    warnings.add("memory: MemTotal not found in /proc/meminfo");
    return undefined;
  }
  return Number(m[1]) * 1024;
}

export interface MemoryAndFirmware {
  memoryInstalledBytes: bigint;
  memoryUsableRatio: number;
  efiSupport: EFISupport;
}

/**
 * Installed memory from the SMBIOS memory devices where readable, else
 * estimated from MemTotal (with a warning); the usable ratio is MemTotal over
 * installed. EFI: booted through EFI when /sys/firmware/efi exists, else what
 * the firmware declares.
 */
export function readMemoryAndFirmware(roots: Roots, warnings: Warnings): MemoryAndFirmware {
  const structures = smbios(roots, warnings);
  const usable = memTotal(roots, warnings);
  let installed = structures ? installedMemoryBytes(structures) : undefined;
  if (installed === undefined && usable !== undefined) {
    if (structures) warnings.add("memory: SMBIOS lists no memory devices");
    warnings.add("memory: installed memory estimated from MemTotal");
    installed = usable;
  }
  let efiSupport = EFISupport.EFI_SUPPORT_UNKNOWN;
  if (exists(join(roots.sys, "firmware", "efi"))) {
    efiSupport = EFISupport.EFI_SUPPORT_ENABLED;
  } else if (structures) {
    const uefi = uefiSupported(structures);
    if (uefi !== undefined) efiSupport = uefi ? EFISupport.EFI_SUPPORT_SUPPORTED : EFISupport.EFI_SUPPORT_UNSUPPORTED;
  }
  return {
    memoryInstalledBytes: BigInt(installed ?? 0),
    memoryUsableRatio: installed && usable ? Math.min(1, usable / installed) : 0,
    efiSupport,
  };
}
