import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Roots } from "./roots.js";

/** Extra disks and NICs in the hostile tree: more than a report may list. */
export const HOSTILE_EXTRA_DEVICES = 300;

/**
 * For tests: a copy of the fixture tree base (test/fixtures/hw/…) in dir,
 * made hostile the way real firmware and drivers can be. DMI strings with
 * NUL, control characters, invalid UTF-8 and 100 kB of serial number; a disk
 * model and the CPU model with NUL, tab and an escape sequence; 300 more disks
 * and 300 more NICs (each also producing a warning), and a NIC whose name
 * holds a control character.
 */
export function writeHostileTree(base: string, dir: string): Roots {
  cpSync(base, dir, { recursive: true, verbatimSymlinks: true });
  const sys = join(dir, "sys");
  const put = (path: string, content: string | Buffer) => {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, content);
  };
  const dmi = join(sys, "class", "dmi", "id");
  put(join(dmi, "sys_vendor"), "Super\0micro\x01\0\0\n");
  put(join(dmi, "product_name"), Buffer.concat([Buffer.from("SYS"), Buffer.from([0xff, 0xfe]), Buffer.from("-6019P-MT\n")]));
  put(join(dmi, "product_serial"), "S".repeat(100_000) + "\n");
  put(join(sys, "class", "block", "nvme0n1", "device", "model"), "Samsung\0SSD\t970\x1b[31m EVO\n");
  const cpuinfo = join(dir, "proc", "cpuinfo");
  put(cpuinfo, readFileSync(cpuinfo, "utf8").replaceAll("model name\t: Intel(R)", "model name\t: \0Intel(R)\x07"));
  for (let i = 0; i < HOSTILE_EXTRA_DEVICES; i++) {
    const n = String(i).padStart(3, "0");
    // Disks without queue/ (a warning each) and NICs without a driver link (a warning each).
    put(join(sys, "class", "block", `vd${n}`, "size"), "2048\n");
    mkdirSync(join(sys, "class", "block", `vd${n}`, "device"), { recursive: true });
    put(join(sys, "class", "net", `eth${n}`, "address"), `02:00:00:00:${n.slice(0, 1).padStart(2, "0")}:${n.slice(1)}\n`);
    mkdirSync(join(sys, "class", "net", `eth${n}`, "device"), { recursive: true });
  }
  put(join(sys, "class", "net", "eth\x01bad", "address"), "not a mac\0\n");
  mkdirSync(join(sys, "class", "net", "eth\x01bad", "device"), { recursive: true });
  return { proc: join(dir, "proc"), sys };
}
