import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BlockDevice_Protocol, EFISupport } from "../../gen/cloud/agent/api/hwreport_pb.js";
import { collectHardwareReport } from "./index.js";
import { installedMemoryBytes, memoryDeviceBytes, parseSmbios, uefiSupported } from "./smbios.js";

const FIXTURES = join(import.meta.dirname, "..", "..", "test", "fixtures", "hw");
const roots = (name: string) => ({ proc: join(FIXTURES, name, "proc"), sys: join(FIXTURES, name, "sys") });

describe("hardware report from a KVM virtual machine (copied from the CI machine)", () => {
  const hw = collectHardwareReport(roots("kvm-vm"));
  const r = hw.report!;

  it("reads the CPU package, its cores and threads", () => {
    expect(r.cpu).toHaveLength(1);
    expect(r.cpu[0]).toMatchObject({ vendor: "AuthenticAMD", model: "AMD EPYC", cores: 2, hardwareThreads: 2 });
    expect(r.cpu[0]!.architecture).toEqual({ case: "x8664", value: expect.objectContaining({ family: 25, model: 17, stepping: 1 }) });
  });

  it("estimates installed memory from MemTotal when there is no DMI, and says so", () => {
    expect(r.memoryInstalledBytes).toBe(24684096n * 1024n);
    expect(r.memoryUsableRatio).toBe(1);
    expect(hw.warning).toContain("memory: installed memory estimated from MemTotal");
    expect(hw.warning.some((w) => w.startsWith("dmi:"))).toBe(true);
    expect(r.efiSupport).toBe(EFISupport.EFI_SUPPORT_UNKNOWN);
  });

  it("reports the virtio disk and skips loop and zram devices", () => {
    expect(r.blockDevice).toHaveLength(1);
    expect(r.blockDevice[0]).toMatchObject({
      capacityBytes: 536870912n * 512n,
      logicalBlockSizeBytes: 512,
      physicalBlockSizeBytes: 4096,
      serialNumber: "overlayblk",
      protocol: BlockDevice_Protocol.UNKNOWN,
    });
  });

  it("reports the physical NIC only", () => {
    expect(r.networkInterface).toHaveLength(1);
    expect(Buffer.from(r.networkInterface[0]!.mac).toString("hex")).toBe("02fc00000001");
    expect(r.networkInterface[0]).toMatchObject({ driver: "virtio_net", linkUp: true, currentSpeedBytes: 0n });
  });
});

describe("hardware report from a dual-socket server tree", () => {
  const hw = collectHardwareReport(roots("bare-metal-server"));
  const r = hw.report!;

  it("groups threads by physical package and counts distinct cores", () => {
    expect(r.cpu).toHaveLength(2);
    for (const c of r.cpu) {
      expect(c).toMatchObject({ vendor: "GenuineIntel", cores: 8, hardwareThreads: 16 });
      expect(c.architecture.value).toMatchObject({ family: 6, model: 85, stepping: 4 });
    }
  });

  it("reads DMI identity, installed memory from SMBIOS and EFI boot", () => {
    expect(r).toMatchObject({ manufacturer: "Supermicro", product: "SYS-6019P-MT", serialNumber: "S123456X9A01234" });
    expect(r.memoryInstalledBytes).toBe(4n * 32n * 1024n ** 3n);
    expect(r.memoryUsableRatio).toBeCloseTo((131712000 * 1024) / (128 * 1024 ** 3), 5);
    expect(r.efiSupport).toBe(EFISupport.EFI_SUPPORT_ENABLED);
    expect(hw.warning).toEqual([]);
  });

  it("reports whole disks with protocol and WWN, not partitions or loop devices", () => {
    expect(r.blockDevice.map((d) => d.deviceModel)).toEqual(["Samsung SSD 970 EVO Plus 500GB", "ST4000NM0035-1V4"]);
    const [nvme, sata] = r.blockDevice;
    expect(nvme).toMatchObject({ protocol: BlockDevice_Protocol.NVME, rotational: false, serialNumber: "S4EVNF0M123456A" });
    expect(Buffer.from(nvme!.wwn).toString("hex")).toBe("0025388b71b0b4c4");
    expect(sata).toMatchObject({ protocol: BlockDevice_Protocol.ATA, rotational: true, vendor: "ATA", physicalBlockSizeBytes: 4096 });
    expect(sata!.capacityBytes).toBe(7_814_037_168n * 512n);
    expect(Buffer.from(sata!.wwn).toString("hex")).toBe("5000c500a1b2c3d4");
  });

  it("reports physical NICs with driver, link and speed in bytes per second", () => {
    expect(r.networkInterface.map((n) => n.driver)).toEqual(["ixgbe", "igb"]);
    expect(r.networkInterface[0]).toMatchObject({ linkUp: true, currentSpeedBytes: 1_250_000_000n });
    expect(r.networkInterface[1]).toMatchObject({ linkUp: false, currentSpeedBytes: 0n });
  });
});

describe("unreadable sources", () => {
  it("become warnings, never a crash", () => {
    const empty = mkdtempSync(join(tmpdir(), "hw-empty-"));
    try {
      const hw = collectHardwareReport({ proc: join(empty, "proc"), sys: join(empty, "sys") });
      expect(hw.report?.cpu).toEqual([]);
      expect(hw.warning).toEqual(expect.arrayContaining(["cpu: /proc/cpuinfo unreadable", "memory: MemTotal not found in /proc/meminfo"]));
      expect(hw.warning.length).toBeGreaterThanOrEqual(5);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe("SMBIOS", () => {
  it("decodes MiB, KiB and extended sizes and the UEFI bit", () => {
    const s = (type: number, fields: Buffer) => ({ type, data: Buffer.concat([Buffer.from([type, 4 + fields.length, 0, 0]), fields]) });
    const dev = (size: number, ext = 0) => {
      const f = Buffer.alloc(0x1e);
      f.writeUInt16LE(size, 0x08);
      f.writeUInt32LE(ext, 0x18);
      return s(17, f);
    };
    expect(memoryDeviceBytes(dev(8192))).toBe(8 * 1024 ** 3);
    expect(memoryDeviceBytes(dev(0x8000 | 512))).toBe(512 * 1024);
    expect(memoryDeviceBytes(dev(0x7fff, 65536))).toBe(64 * 1024 ** 3);
    expect(memoryDeviceBytes(dev(0))).toBeUndefined();
    expect(memoryDeviceBytes(dev(0xffff))).toBeUndefined();
    expect(installedMemoryBytes([dev(1024), dev(0), dev(2048)])).toBe(3 * 1024 ** 3);
    const bios = Buffer.alloc(0x14);
    bios[0x0f] = 0x08;
    expect(uefiSupported([s(0, bios)])).toBe(true);
    expect(uefiSupported([s(0, Buffer.alloc(0x14))])).toBe(false);
  });

  it("stops at a damaged structure instead of reading past the table", () => {
    const good = Buffer.from([17, 4, 0, 0, 0, 0]);
    const damaged = Buffer.from([17, 200, 0, 0]);
    expect(parseSmbios(Buffer.concat([good, damaged])).length).toBe(1);
  });
});
