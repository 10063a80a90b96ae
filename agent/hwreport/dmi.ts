import { cleanText } from "../sanitize.js";
import { join, readText, type Roots, type Warnings } from "./roots.js";

export interface DmiIdentity {
  manufacturer: string;
  product: string;
  serialNumber: string;
}

// Values firmware vendors put where they had nothing to say.
const PLACEHOLDERS = /^(to be filled by o\.e\.m\.|default string|system serial number|not specified|none|0+|1234567890|\s*)$/i;

function field(dir: string, name: string, warnings: Warnings, label: string): string {
  const v = readText(join(dir, name));
  if (v === undefined) {
    warnings.add(`dmi: ${label} unreadable (${name})`);
    return "";
  }
  // Cleaned before the placeholder check: firmware pads with NULs too.
  const clean = cleanText(v);
  return PLACEHOLDERS.test(clean) ? "" : clean;
}

/** The system's manufacturer, product name and serial from /sys/class/dmi/id. */
export function readDmiIdentity(roots: Roots, warnings: Warnings): DmiIdentity {
  const dir = join(roots.sys, "class", "dmi", "id");
  if (readText(join(dir, "sys_vendor")) === undefined && readText(join(dir, "product_name")) === undefined) {
    warnings.add("dmi: /sys/class/dmi/id not present (no DMI on this machine?)");
    return { manufacturer: "", product: "", serialNumber: "" };
  }
  return {
    manufacturer: field(dir, "sys_vendor", warnings, "manufacturer"),
    product: field(dir, "product_name", warnings, "product"),
    serialNumber: field(dir, "product_serial", warnings, "serial number (root only)"),
  };
}
