import { describe, expect, it } from "vitest";
import { HeartbeatState } from "../gen/bmaas/operator/v1/operator_pb.js";
import { HEARTBEAT_STATE_NAMES, heartbeatStateName, heartbeatStateOf } from "./heartbeat-states.js";

describe("heartbeat state names", () => {
  it("name every state of the operator API but UNSPECIFIED, each the enum value of the same name", () => {
    expect(HEARTBEAT_STATE_NAMES).toEqual(["fresh", "stale", "never"]);
    for (const name of HEARTBEAT_STATE_NAMES) expect(HeartbeatState[heartbeatStateOf(name)]).toBe(name.toUpperCase());
    const named = Object.values(HeartbeatState).filter((v): v is HeartbeatState => typeof v === "number" && v !== HeartbeatState.UNSPECIFIED);
    expect(named.map(heartbeatStateName).sort()).toEqual([...HEARTBEAT_STATE_NAMES].sort());
  });

  it("have no name for UNSPECIFIED or a number the API does not define", () => {
    expect(heartbeatStateName(HeartbeatState.UNSPECIFIED)).toBeUndefined();
    expect(heartbeatStateName(99 as HeartbeatState)).toBeUndefined();
  });
});
