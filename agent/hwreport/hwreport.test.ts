import { fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BlockDevice_Protocol, EFISupport } from "../../gen/cloud/agent/api/hwreport_pb.js";
import { AgentHardwareReportSchema } from "../../gen/cloud/bmaas/server/api/agent_pb.js";
import { cleanText, cleanWarnings, MAX_FIELD_CHARS, MAX_LIST_ENTRIES, MAX_WARNING_CHARS, MAX_WARNINGS } from "../sanitize.js";
import { HOSTILE_EXTRA_DEVICES, writeHostileTree } from "./hostile-tree.js";
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

describe("a hostile tree: NULs, control characters, invalid UTF-8, huge values, too many devices", () => {
  const tmp = mkdtempSync(join(tmpdir(), "hw-hostile-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const hw = collectHardwareReport(writeHostileTree(join(FIXTURES, "bare-metal-server"), join(tmp, "tree")));
  const r = hw.report!;

  /** Every string anywhere in the report, as the server will see it. */
  const strings = (v: unknown): string[] =>
    typeof v === "string" ? [v] : Array.isArray(v) ? v.flatMap(strings) : v && typeof v === "object" ? Object.values(v).flatMap(strings) : [];

  it("sends no control characters or unpaired surrogates, and no string over 256 characters", () => {
    const all = strings(toJson(AgentHardwareReportSchema, hw));
    expect(all.length).toBeGreaterThan(500);
    for (const s of all) {
      expect(s).not.toMatch(/[\x00-\x1f\x7f]/);
      expect(s).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/);
    }
    for (const s of strings(toJson(AgentHardwareReportSchema, { ...hw, warning: [] }))) expect([...s].length).toBeLessThanOrEqual(MAX_FIELD_CHARS);
    // Encodes, and decodes to the same thing (valid UTF-8 throughout).
    const bytes = toBinary(AgentHardwareReportSchema, hw);
    expect(toJson(AgentHardwareReportSchema, fromBinary(AgentHardwareReportSchema, bytes))).toEqual(toJson(AgentHardwareReportSchema, hw));
  });

  it("keeps what is readable of each value", () => {
    expect(r.manufacturer).toBe("Supermicro");
    expect(r.product).toBe("SYS\ufffd\ufffd-6019P-MT");
    expect(r.serialNumber).toBe("S".repeat(256));
    expect(r.blockDevice[0]!.deviceModel).toBe("SamsungSSD 970[31m EVO"); // NUL and ESC dropped, the tab a space
    expect(r.cpu[0]!.model).toBe("Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz");
  });

  it("cuts lists at 256 entries and warnings at 64 of at most 512 characters, and says what was cut first", () => {
    expect(r.blockDevice).toHaveLength(MAX_LIST_ENTRIES);
    expect(r.networkInterface).toHaveLength(MAX_LIST_ENTRIES);
    expect(hw.warning).toHaveLength(MAX_WARNINGS);
    expect(hw.warning[0]).toBe(`block_device: ${HOSTILE_EXTRA_DEVICES + 2} entries found, only the first 256 reported`);
    expect(hw.warning[1]).toBe(`network_interface: ${HOSTILE_EXTRA_DEVICES + 2} entries found, only the first 256 reported`);
    expect(hw.warning).toContain("block vd000: block sizes unreadable");
    expect(hw.warning.at(-1)).toMatch(/^warnings: \d+ more not reported \(at most 64\)$/);
    for (const w of hw.warning) expect([...w].length).toBeLessThanOrEqual(MAX_WARNING_CHARS);
  });
});

describe("cleanText", () => {
  it("drops controls, replaces invalid UTF-8, trims and caps by code points without splitting pairs", () => {
    expect(cleanText(" a\u0000b\tc\r\n\u007f ")).toBe("ab c");
    expect(cleanText("net eth\u0001bad: MAC address unreadable")).toBe("net ethbad: MAC address unreadable");
    expect(cleanText(Buffer.from([0x61, 0xc3, 0x28, 0x62]))).toBe("a\ufffd(b");
    expect(cleanText("x\udc00y\ud83d")).toBe("x\ufffdy\ufffd");
    expect(cleanText("😀".repeat(300))).toBe("😀".repeat(256));
    expect(cleanText("\u0000".repeat(1_000_000) + "late")).toBe("");
    expect(cleanText("ab😀", 3)).toBe("ab😀");
  });

  it("cleanWarnings caps count and length", () => {
    const w = cleanWarnings(Array.from({ length: 100 }, (_, i) => `w${i} ` + "z".repeat(1000)));
    expect(w).toHaveLength(64);
    expect(w[0]).toHaveLength(512);
    expect(w[63]).toBe("warnings: 37 more not reported (at most 64)");
  });
});
