import type { MessageInitShape } from "@bufbuild/protobuf";
import type { NetworkInterfaceSchema } from "../../gen/cloud/agent/api/hwreport_pb.js";
import { exists, join, linkName, listDir, readInt, readText, type Roots, type Warnings } from "./roots.js";

type NetworkInterface = MessageInitShape<typeof NetworkInterfaceSchema>;

/**
 * Physical network devices from /sys/class/net: those with a device link
 * (loopback, bridges, veths, tunnels have none). Speed is in Mbit/s there and
 * in bytes per second in the report; -1 (no link) becomes 0.
 */
export function readNetworkInterfaces(roots: Roots, warnings: Warnings): NetworkInterface[] {
  const base = join(roots.sys, "class", "net");
  const names = listDir(base);
  if (names.length === 0) warnings.add("net: /sys/class/net empty or unreadable");
  const out: NetworkInterface[] = [];
  for (const name of names) {
    const dir = join(base, name);
    if (!exists(join(dir, "device"))) continue;
    const address = readText(join(dir, "address"));
    // 6 bytes for Ethernet, 20 for InfiniBand; anything longer is not an address.
    if (!address || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5,31}$/i.test(address)) {
      warnings.add(`net ${name}: MAC address unreadable`);
      continue;
    }
    const driver = linkName(join(dir, "device", "driver"));
    if (!driver) warnings.add(`net ${name}: driver unknown`);
    // carrier reads fail with EINVAL while the interface is down.
    const carrier = readInt(join(dir, "carrier"));
    const speed = readInt(join(dir, "speed"));
    out.push({
      mac: Buffer.from(address.replaceAll(":", ""), "hex"),
      driver: driver ?? "",
      linkUp: carrier === 1 || (carrier === undefined && readText(join(dir, "operstate")) === "up"),
      currentSpeedBytes: speed !== undefined && speed > 0 ? BigInt(speed) * 125_000n : 0n,
    });
  }
  return out;
}
