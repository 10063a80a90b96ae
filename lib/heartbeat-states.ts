import type { HeartbeatState } from "../gen/bmaas/operator/v1/operator_pb.js";

// The heartbeat states by name — the names bmdb classifies machines by, bmctl
// accepts and prints — and the operator API's HeartbeatState for each: the one
// map between the two, used by the server's messages and filters and by bmctl.
//
// Why the enum values are written as numbers with only a type import: bmctl
// reads this map while it builds its command tree, and a value import would
// load the generated operator descriptors (and @bufbuild/protobuf) for every
// --help. `satisfies HeartbeatState.X` makes tsc check each number against the
// generated enum, so a renumbered proto fails the build instead of drifting.

/** A machine's heartbeat state as bmdb classifies it and operators name it. */
export type HeartbeatStateName = "fresh" | "stale" | "never";

const BY_NAME = {
  fresh: 1 satisfies HeartbeatState.FRESH,
  stale: 2 satisfies HeartbeatState.STALE,
  never: 3 satisfies HeartbeatState.NEVER,
} as const satisfies Record<HeartbeatStateName, HeartbeatState>;

/** Every name, in the order help texts list them. */
export const HEARTBEAT_STATE_NAMES = Object.keys(BY_NAME) as HeartbeatStateName[];

/** The operator API's value for a name. */
export function heartbeatStateOf(name: HeartbeatStateName): HeartbeatState {
  return BY_NAME[name];
}

/** The name of an operator API value; undefined for UNSPECIFIED or an unknown number. */
export function heartbeatStateName(state: HeartbeatState): HeartbeatStateName | undefined {
  return HEARTBEAT_STATE_NAMES.find((name) => BY_NAME[name] === state);
}
