import type { MessageInitShape } from "@bufbuild/protobuf";
import { BlockDevice_Protocol, type BlockDeviceSchema } from "../../gen/cloud/agent/api/hwreport_pb.js";
import { exists, join, listDir, readInt, readText, type Roots, type Warnings } from "./roots.js";

type BlockDevice = MessageInitShape<typeof BlockDeviceSchema>;

/** naa./eui. world wide names (8 or 16 bytes) as bytes; other identifiers are not WWNs. */
function wwnBytes(wwid: string | undefined): Uint8Array | undefined {
  const m = wwid && /^(?:naa|eui)\.(?:0x)?([0-9a-f]{16}|[0-9a-f]{32})$/i.exec(wwid);
  return m ? Buffer.from(m[1]!, "hex") : undefined;
}

function protocolOf(name: string, vendor: string): BlockDevice_Protocol {
  if (name.startsWith("nvme")) return BlockDevice_Protocol.NVME;
  if (name.startsWith("mmcblk")) return BlockDevice_Protocol.MMC;
  if (name.startsWith("sd")) return vendor === "ATA" ? BlockDevice_Protocol.ATA : BlockDevice_Protocol.SCSI;
  return BlockDevice_Protocol.UNKNOWN;
}

/**
 * Whole disks from /sys/class/block: partitions are skipped, and so are
 * virtual devices (loop, zram, device-mapper…), which have no device link.
 */
export function readBlockDevices(roots: Roots, warnings: Warnings): BlockDevice[] {
  const base = join(roots.sys, "class", "block");
  const names = listDir(base);
  if (names.length === 0) warnings.add("block: /sys/class/block empty or unreadable");
  const out: BlockDevice[] = [];
  for (const name of names) {
    const dir = join(base, name);
    if (exists(join(dir, "partition")) || !exists(join(dir, "device"))) continue;
    const sectors = readInt(join(dir, "size"));
    if (sectors === undefined) {
      warnings.add(`block ${name}: size unreadable`);
      continue;
    }
    const vendor = readText(join(dir, "device", "vendor")) ?? "";
    const wwid = readText(join(dir, "wwid")) ?? readText(join(dir, "device", "wwid"));
    const wwn = wwnBytes(wwid);
    const logical = readInt(join(dir, "queue", "logical_block_size"));
    const physical = readInt(join(dir, "queue", "physical_block_size"));
    if (logical === undefined || physical === undefined) warnings.add(`block ${name}: block sizes unreadable`);
    out.push({
      vendor,
      deviceModel: readText(join(dir, "device", "model")) ?? "",
      serialNumber: readText(join(dir, "device", "serial")) ?? readText(join(dir, "serial")) ?? "",
      ...(wwn && { wwn }),
      rotational: readInt(join(dir, "queue", "rotational")) === 1,
      // The kernel counts size in 512-byte sectors whatever the device's block size.
      capacityBytes: BigInt(sectors) * 512n,
      logicalBlockSizeBytes: logical ?? 0,
      physicalBlockSizeBytes: physical ?? 0,
      protocol: protocolOf(name, vendor),
    });
  }
  return out;
}
