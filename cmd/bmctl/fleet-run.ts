import { toJsonString } from "@bufbuild/protobuf";
import { FleetStatsResponseSchema } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { formatFleetStats } from "../private/format.js";
import { print, type CommandContext } from "./context.js";

// bmctl fleet stats, run (fleet.ts defines it).

export async function fleetStats({ operator, deadline }: CommandContext, o: { json?: boolean }): Promise<void> {
  const s = await (await operator()).fleetStats({}, deadline());
  print(o.json ? toJsonString(FleetStatsResponseSchema, s, { prettySpaces: 2 }) : formatFleetStats(s));
}
