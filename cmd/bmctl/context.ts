import type { OperatorService } from "../../gen/bmaas/operator/v1/operator_pb.js";
import type { ServiceClient } from "../../lib/grpc-adapter.js";

export type Operator = ServiceClient<(typeof OperatorService)["method"]>;

/** What bmctl's command groups share: the client, error handling, output. */
export interface CommandContext {
  /** The operator client, dialled on first use. */
  operator: () => Operator;
  /** Wraps an action with bmctl's one-line error handling. */
  run: <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void>;
  deadline: () => { deadline: number };
  print: (text: string) => void;
  example: (text: string) => string;
  /** Argument parser: a machine ID, checked before dialling. */
  machineId: (text: string) => string;
  /** Argument parser: a page size of at most 1000. */
  pageSize: (text: string) => number;
}
