import type { ServerResponse } from "node:http";
import type { Bmdb, EventDelivery } from "../../bmdb/index.js";
import { encodeEvent } from "../../bmdb/events.js";

// Server-Sent Events from the same feed as WatchMachines (bmdb.subscribe:
// committed history rows, from every server on the database). Each browser
// gets its own bounded queue: one that stops reading is disconnected (its
// EventSource reconnects and the page says it may have missed changes), so
// it costs bounded memory and never slows the writers.

export interface LiveEventsOptions {
  /** Events a browser may fall behind before it is disconnected. */
  maxQueued: number;
  /** Open event streams at most; more are answered 503. */
  maxStreams: number;
  /** Told why listening failed (the browser sees only "unavailable"). */
  onListenError?: (error: unknown) => void;
}

export class LiveEvents {
  readonly #open = new Set<ServerResponse>();

  constructor(
    private readonly bmdb: Bmdb,
    private readonly options: LiveEventsOptions,
  ) {}

  get streams(): number {
    return this.#open.size;
  }

  /** Ends every stream (server shutdown). */
  closeAll(): void {
    for (const res of this.#open) res.end();
    this.#open.clear();
  }

  /** Serves one event stream, of all machines or of machineId only. */
  async serve(res: ServerResponse, machineId: string | undefined): Promise<void> {
    if (this.#open.size >= this.options.maxStreams) {
      res.writeHead(503, { "content-type": "text/plain; charset=utf-8", "retry-after": "10" }).end("too many live views open\n");
      return;
    }
    const queue: string[] = [];
    let blocked = false;
    let done = false;
    let unsubscribe: (() => void) | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      unsubscribe?.();
      clearInterval(keepalive);
      this.#open.delete(res);
      res.end();
    };
    const pump = () => {
      while (!done && !blocked && queue.length > 0) {
        if (!res.write(queue.shift()!)) {
          blocked = true;
          res.once("drain", () => {
            blocked = false;
            pump();
          });
        }
      }
    };
    const push = (frame: string) => {
      queue.push(frame);
      if (queue.length > this.options.maxQueued) return finish();
      pump();
    };
    const onDelivery = (d: EventDelivery) => {
      if (done) return;
      if (d.kind === "gap") return push(`event: gap\ndata: ${JSON.stringify({ reason: d.reason })}\n\n`);
      if (machineId && d.event.machineId !== machineId) return;
      push(`event: machine\ndata: ${encodeEvent(d.event)}\n\n`);
    };
    // Proxies and idle timers see traffic; browsers ignore comment lines.
    const keepalive = setInterval(() => push(": keepalive\n\n"), 20_000);
    keepalive.unref();
    res.on("close", finish);
    try {
      unsubscribe = await this.bmdb.subscribe(onDelivery);
    } catch (e) {
      this.options.onListenError?.(e);
      clearInterval(keepalive);
      done = true;
      res.writeHead(503, { "content-type": "text/plain; charset=utf-8" }).end("cannot listen for machine events: database unavailable\n");
      return;
    }
    if (done) return unsubscribe();
    this.#open.add(res);
    // Headers now: from here on every committed event reaches this browser.
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "x-accel-buffering": "no" });
    res.write("retry: 3000\n\n");
    res.flushHeaders();
  }
}
