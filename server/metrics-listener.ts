import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Server } from "node:net";
import type { Registry } from "prom-client";
import { parseListenAddress, startListening } from "./listen.js";

export interface MetricsListenerOptions {
  address: string;
  registry: Registry;
  /** When set, serve HTTPS and require a client certificate from this CA. */
  mtls?: { cert: string; key: string; ca: string };
  /** Told why a scrape failed (the scraper only sees that it did). */
  onError?: (error: unknown) => void;
}

/** Serves GET /metrics in the Prometheus text format. */
export function listenForMetrics(options: MetricsListenerOptions): Promise<Server> {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics\n");
      return;
    }
    options.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": options.registry.contentType }).end(text),
      (err: unknown) => {
        options.onError?.(err);
        res.writeHead(500, { "content-type": "text/plain" }).end("metrics unavailable; see the server log\n");
      },
    );
  };
  const server = options.mtls
    ? createHttpsServer({ ...options.mtls, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, handler)
    : createHttpServer(handler);
  return startListening(server, parseListenAddress(options.address), "metrics");
}
