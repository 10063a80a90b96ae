import { v7 as uuidv7 } from "uuid";

// History event IDs: UUIDv7 at the event's time, strictly increasing within
// this process even when the clock stands still (tests) or steps back, so
// events of one machine keep their order in (occurred_at, event_id).
let lastMs = 0;
let seq = 0;

export function newEventId(at: Date): string {
  const ms = at.getTime();
  if (ms > lastMs) {
    lastMs = ms;
    seq = Math.floor(Math.random() * 0x1000000); // room left to count up within the millisecond
  } else {
    seq = (seq + 1) >>> 0;
  }
  return uuidv7({ msecs: lastMs, seq });
}
