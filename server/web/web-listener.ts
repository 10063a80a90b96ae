import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { isIP } from "node:net";
import { boundAddress, parseListenAddress, startListening } from "../listen.js";

// The web view's listener. Plain HTTP is allowed only where nobody but this
// host can connect (a loopback address); on any other address the browser
// must present a client certificate of the operator CA over TLS 1.3, the
// same trust as the operator gRPC listener.

export interface WebListenerOptions {
  address: string;
  /** Server certificate, key, and the operator CA; used unless the address is loopback. */
  tls: { cert: string; key: string; ca: string };
  handler: RequestListener;
}

export interface WebListener {
  server: Server;
  /** Where a browser goes, e.g. "http://127.0.0.1:4244/". */
  url: string;
  /** True when served over HTTPS behind the operator CA. */
  mtls: boolean;
}

/** True for 127.0.0.0/8, ::1 and "localhost"; "" (every interface) is not loopback. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(h);
  return false;
}

/**
 * A page served over plain HTTP on loopback could still be read by a web
 * site in the same browser that rebinds its own name to 127.0.0.1: such
 * requests carry the attacker's host name, so only loopback names pass.
 */
function hostAllowed(req: IncomingMessage): boolean {
  const host = req.headers.host ?? "";
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::\d+)?$/.exec(host);
  return !!m && isLoopbackHost(m[1] ?? m[2] ?? "");
}

export async function listenForWeb(options: WebListenerOptions): Promise<WebListener> {
  const address = parseListenAddress(options.address);
  const { host, port } = address;
  const mtls = !isLoopbackHost(host);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (!mtls && !hostAllowed(req)) {
      res.writeHead(421, { "content-type": "text/plain; charset=utf-8" }).end("this listener answers only to a loopback host name\n");
      return;
    }
    options.handler(req, res);
  };
  const server = mtls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key, ca: options.tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, handler)
    : createHttpServer(handler);
  // Pages are small and quick; a slow client must not hold a socket for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await startListening(server, address, "the web view");
  const bound = boundAddress(server);
  // Every-interface binds are reached by a name the operator knows; show loopback's.
  const shown = host === "" || host === "0.0.0.0" || host === "::" ? `localhost:${port === 0 ? bound.slice(bound.lastIndexOf(":") + 1) : port}` : bound;
  return { server, url: `${mtls ? "https" : "http"}://${shown}/`, mtls };
}
