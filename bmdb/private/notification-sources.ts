import type { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { EVENTS_CHANNEL, type NotificationSource } from "../events.js";

/**
 * LISTEN on a dedicated PostgreSQL connection (not one of the pool's). NOTIFY
 * is delivered at commit and in commit order, so a watcher on any server
 * replica sees every committed change. If the connection drops, listeners
 * are told there may be a gap and it reconnects with backoff.
 */
export function postgresNotifications(url: string): NotificationSource {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;

  const connect = async (onPayload: (p: string) => void, onGap: (r: string) => void, delayMs: number): Promise<void> => {
    const c = new pg.Client({ connectionString: url });
    c.on("notification", (n) => {
      if (n.channel === EVENTS_CHANNEL && n.payload) onPayload(n.payload);
    });
    c.on("error", () => {
      if (stopped || client !== c) return;
      client = undefined;
      onGap("lost the database notification connection; reconnecting");
      retry = setTimeout(() => void connect(onPayload, onGap, Math.min(delayMs * 2, 30_000)).catch(() => {}), delayMs);
    });
    await c.connect();
    await c.query(`listen ${EVENTS_CHANNEL}`);
    client = c;
  };

  return {
    start: (onPayload, onGap) => connect(onPayload, onGap, 500),
    async stop() {
      stopped = true;
      clearTimeout(retry);
      await client?.end().catch(() => {});
    },
  };
}

/** PGlite delivers NOTIFY to listeners in the same process after commit. */
export function pgliteNotifications(db: PGlite): NotificationSource {
  let unlisten: (() => Promise<void>) | undefined;
  return {
    async start(onPayload) {
      unlisten = await db.listen(EVENTS_CHANNEL, onPayload);
    },
    async stop() {
      if (!db.closed) await unlisten?.().catch(() => {});
    },
  };
}
