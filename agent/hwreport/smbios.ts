// A reader for the SMBIOS structure table the kernel exposes at
// /sys/firmware/dmi/tables/DMI (readable by root only): just what the report
// needs, installed memory (type 17) and UEFI support (type 0).

export interface SmbiosStructure {
  type: number;
  /** The formatted area, header included, as the specification numbers offsets. */
  data: Buffer;
}

/** Splits the table into structures; stops at end-of-table (127) or at damage. */
export function parseSmbios(table: Buffer): SmbiosStructure[] {
  const out: SmbiosStructure[] = [];
  let pos = 0;
  while (pos + 4 <= table.length) {
    const type = table[pos]!;
    const length = table[pos + 1]!;
    if (length < 4 || pos + length > table.length) break;
    out.push({ type, data: table.subarray(pos, pos + length) });
    // The string set after the formatted area ends with two NULs.
    let end = pos + length;
    while (end + 1 < table.length && !(table[end] === 0 && table[end + 1] === 0)) end++;
    pos = end + 2;
    if (type === 127) break;
  }
  return out;
}

/** Bytes of one type 17 memory device, or undefined if empty or unknown. */
export function memoryDeviceBytes(s: SmbiosStructure): number | undefined {
  if (s.type !== 17 || s.data.length < 0x0e) return undefined;
  const size = s.data.readUInt16LE(0x0c);
  if (size === 0 || size === 0xffff) return undefined;
  if (size === 0x7fff) {
    if (s.data.length < 0x20) return undefined;
    return (s.data.readUInt32LE(0x1c) & 0x7fffffff) * 1024 * 1024;
  }
  // Bit 15 selects KiB granularity, else MiB.
  return size & 0x8000 ? (size & 0x7fff) * 1024 : size * 1024 * 1024;
}

/** Sum of all installed memory devices, or undefined if none are described. */
export function installedMemoryBytes(structures: SmbiosStructure[]): number | undefined {
  const sizes = structures.map(memoryDeviceBytes).filter((n): n is number => n !== undefined);
  return sizes.length ? sizes.reduce((a, b) => a + b, 0) : undefined;
}

/** Whether the firmware declares UEFI support (type 0, extension byte 2, bit 3). */
export function uefiSupported(structures: SmbiosStructure[]): boolean | undefined {
  const bios = structures.find((s) => s.type === 0);
  if (!bios || bios.data.length <= 0x13) return undefined;
  return (bios.data[0x13]! & 0x08) !== 0;
}
