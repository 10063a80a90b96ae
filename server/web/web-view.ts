import type { Server } from "node:http";
import type { Logger } from "pino";
import type { Bmdb } from "../../bmdb/index.js";
import { HeartbeatTraffic } from "./heartbeat-traffic.js";
import { LiveEvents } from "./live-events.js";
import { OverviewSnapshot } from "./overview-data.js";
import { webApp } from "./web-app.js";
import { listenForWeb } from "./web-listener.js";

// The read-only fleet web view: its listener, pages, live event streams and
// heartbeat traffic sampler, started and stopped as one part of the server.

export interface WebViewOptions {
  /** "127.0.0.1:4244": plain HTTP on loopback; any other address: HTTPS behind the operator CA. */
  address: string;
  tls: { cert: string; key: string; ca: string };
  bmdb: Bmdb;
  /** Heartbeats this server took since it started (a growing count), for the traffic picture. */
  heartbeatsTaken: () => number;
  /** Events a browser may fall behind before its stream is ended. */
  maxQueued: number;
  logger: Logger;
}

export interface WebView {
  server: Server;
  url: string;
  mtls: boolean;
  traffic: HeartbeatTraffic;
  live: LiveEvents;
  /** Ends live streams and the sampler; the listener is closed by its owner. */
  stop(): void;
}

export async function startWebView(options: WebViewOptions): Promise<WebView> {
  const { bmdb, logger } = options;
  const traffic = new HeartbeatTraffic(options.heartbeatsTaken);
  const live = new LiveEvents(bmdb, {
    maxQueued: options.maxQueued,
    maxStreams: 256,
    onListenError: (err) => logger.warn({ err: (err as Error).message }, "web: cannot listen for machine events"),
  });
  const snapshot = new OverviewSnapshot(bmdb);
  snapshot.prime((err) => logger.warn({ err: (err as Error).message }, "web: cannot read the fleet figures"));
  // Without an event feed the figures are only renewed by age.
  const unsubscribe = await (async () => bmdb.subscribe(() => snapshot.invalidate()))().catch((err: unknown) => {
    logger.warn({ err: (err as Error).message }, "web: no machine events; overview figures renew by age only");
    return () => {};
  });
  const listener = await listenForWeb({ address: options.address, tls: options.tls, handler: webApp({ bmdb, snapshot, traffic, live, logger }) });
  traffic.start();
  return {
    ...listener,
    traffic,
    live,
    stop() {
      unsubscribe();
      traffic.stop();
      live.closeAll();
      listener.server.closeIdleConnections();
    },
  };
}
