import type { Transaction } from "kysely";
import type { Database } from "../database.js";
import type { FleetThresholds } from "../fleet.js";

/**
 * What every domain operation gets from the Bmdb facade: its transaction, the
 * time it happens at (read from the clock once per attempt, so every row and
 * history event one attempt writes carries the same time), the fleet
 * thresholds, and whether history writes are announced with NOTIFY (only
 * when the handle has an event source that could hear them).
 */
export interface TxContext {
  readonly trx: Transaction<Database>;
  readonly now: Date;
  readonly thresholds: FleetThresholds;
  readonly notify: boolean;
}
