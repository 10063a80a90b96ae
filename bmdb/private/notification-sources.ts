import pg from "pg";
import { EVENTS_CHANNEL, type NotificationSource } from "../events.js";
import type { PGliteWorkerClient } from "./pglite-worker-dialect.js";

export interface ReconnectOptions {
  /** First delay before reconnecting (doubled after each failed try). */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * LISTEN on a dedicated PostgreSQL connection (not one of the pool's). NOTIFY
 * is delivered at commit and in commit order, so a watcher on any server
 * replica sees every committed change. If the connection drops, listeners
 * are told there may be a gap, and it reconnects with backoff for as long as
 * it takes. The client always has an error listener: a lost connection must
 * never become an unhandled 'error' event, which would end the process.
 */
export function postgresNotifications(url: string, options: ReconnectOptions = {}): NotificationSource {
  const initialDelayMs = options.initialDelayMs ?? 100;
  const maxDelayMs = options.maxDelayMs ?? 5_000;
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;

  return {
    async start(onPayload, onGap) {
      const lost = (c: pg.Client) => {
        if (stopped || client !== c) return;
        client = undefined;
        c.end().catch(() => {});
        onGap("lost the database notification connection; reconnecting");
        schedule(initialDelayMs);
      };

      const attach = async (): Promise<pg.Client> => {
        const c = new pg.Client({ connectionString: url, keepAlive: true });
        c.on("notification", (n) => {
          if (n.channel === EVENTS_CHANNEL && n.payload) onPayload(n.payload);
        });
        c.on("error", () => lost(c));
        c.on("end", () => lost(c));
        try {
          await c.connect();
          await c.query(`listen ${EVENTS_CHANNEL}`);
        } catch (e) {
          await c.end().catch(() => {});
          throw e;
        }
        return c;
      };

      const schedule = (delayMs: number) => {
        if (stopped) return;
        clearTimeout(retry);
        retry = setTimeout(() => {
          attach().then(
            (c) => {
              if (stopped) void c.end().catch(() => {});
              else client = c;
            },
            () => schedule(Math.min(delayMs * 2, maxDelayMs)),
          );
        }, delayMs);
      };

      client = await attach();
    },
    async stop() {
      stopped = true;
      clearTimeout(retry);
      const c = client;
      client = undefined;
      await c?.end().catch(() => {});
    },
  };
}

/** NOTIFY from the PGlite worker, forwarded to this thread after commit. */
export function pgliteNotifications(worker: PGliteWorkerClient): NotificationSource {
  let unlisten: (() => Promise<void>) | undefined;
  let offGone: (() => void) | undefined;
  return {
    async start(onPayload, onGap) {
      offGone = worker.onGone((reason) => onGap(`lost the database: ${reason}`));
      unlisten = await worker.listen(EVENTS_CHANNEL, onPayload);
    },
    async stop() {
      offGone?.();
      if (worker.alive) await unlisten?.().catch(() => {});
    },
  };
}
