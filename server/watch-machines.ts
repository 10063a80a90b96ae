import * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Bmdb, EventDelivery } from "../bmdb/index.js";
import type { WatchMachinesResponseSchema } from "../gen/bmaas/operator/v1/operator_pb.js";
import { machineEventMessage } from "./operator-messages.js";
import { RpcError } from "./rpc-error.js";

type Item = MessageInitShape<typeof WatchMachinesResponseSchema>;

export interface WatchOptions {
  /** Events a watcher may fall behind before it is dropped. */
  maxQueued: number;
  /** Told why listening failed (the caller only hears "unavailable"). */
  onListenError?: (error: unknown) => void;
}

/**
 * Streams machine events to one watcher. Events arrive from the database
 * listener and are queued per watcher; the queue drains as fast as the
 * client reads (respecting the stream's backpressure). A watcher that falls
 * maxQueued events behind is ended with RESOURCE_EXHAUSTED, so a stalled
 * client costs bounded memory and never slows the writers.
 */
export function watchMachines(
  bmdb: Bmdb,
  machineId: string | undefined,
  call: grpc.ServerWritableStream<unknown, unknown>,
  send: (m: Item) => boolean,
  options: WatchOptions,
  stopping: AbortSignal,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const queue: Item[] = [];
    let blocked = false;
    let done = false;
    let unsubscribe: (() => void) | undefined;

    const finish = (error?: RpcError) => {
      if (done) return;
      done = true;
      unsubscribe?.();
      stopping.removeEventListener("abort", onStop);
      if (error) reject(error);
      else resolve();
    };
    const onStop = () => finish();

    const pump = () => {
      while (!done && !blocked && queue.length > 0) {
        if (!send(queue.shift()!)) {
          blocked = true;
          call.once("drain", () => {
            blocked = false;
            pump();
          });
        }
      }
    };

    const onDelivery = (d: EventDelivery) => {
      if (done) return;
      if (d.kind === "event" && machineId && d.event.machineId !== machineId) return;
      queue.push(d.kind === "event" ? { item: { case: "event", value: machineEventMessage(d.event) } } : { item: { case: "gap", value: d.reason } });
      if (queue.length > options.maxQueued) {
        finish(new RpcError(grpc.status.RESOURCE_EXHAUSTED, `watcher fell more than ${options.maxQueued} events behind and was dropped; reconnect`));
        return;
      }
      pump();
    };

    call.on("cancelled", () => finish());
    call.on("close", () => finish());
    stopping.addEventListener("abort", onStop);
    bmdb.subscribe(onDelivery).then(
      (u) => {
        if (done) return u();
        unsubscribe = u;
        // Headers now tell the client the watch is live: events committed
        // from here on will reach it.
        call.sendMetadata(new grpc.Metadata());
      },
      // The cause stays in the server's log; the caller learns only that it may retry.
      (e: unknown) => {
        options.onListenError?.(e);
        finish(new RpcError(grpc.status.UNAVAILABLE, "cannot listen for machine events: database unavailable, try again later"));
      },
    );
  });
}
