import { connect } from "node:tls";

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/**
 * Why a gRPC connection could not be made, in the user's terms. grpc-js says
 * only "Failed to connect" when the server rejects our certificate, so on
 * UNAVAILABLE we try one plain TLS handshake ourselves and read what happens.
 */
export function diagnoseConnection(server: string, tls: TlsMaterial, timeoutMs = 3000): Promise<string> {
  const i = server.lastIndexOf(":");
  const host = server.slice(0, i).replace(/^\[|\]$/g, "") || "localhost";
  const port = Number(server.slice(i + 1));
  return new Promise((resolve) => {
    let settled = false;
    const done = (why: string) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(why);
    };
    const socket = connect({
      host,
      port,
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      ALPNProtocols: ["h2"],
      ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
    });
    socket.setTimeout(timeoutMs, () => done(`the server at ${server} did not answer`));
    socket.on("secureConnect", () => {
      // TLS 1.3 servers check our certificate after the client finished: a
      // refusal arrives as an alert on the first read, so read (and say the
      // HTTP/2 preface to get an answer). Silence means it was fine.
      socket.on("data", () => {});
      socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      setTimeout(() => done(`connected to ${server}, but gRPC failed`), 1000);
    });
    socket.on("close", () =>
      done(`the server at ${server} refused our client certificate (it closed the connection after the handshake): use an operator certificate signed by its operator CA`),
    );
    socket.on("error", (e: NodeJS.ErrnoException) => {
      const m = e.message;
      if (e.code === "ECONNREFUSED") return done(`cannot reach the server at ${server}: connection refused`);
      if (e.code === "ENOTFOUND" || e.code === "EAI_AGAIN") return done(`cannot reach the server at ${server}: unknown host`);
      if (/alert|certificate required|unknown ca|bad certificate/i.test(m) && !/verify|self.signed|unable to get/i.test(m)) {
        return done(`the server at ${server} refused our client certificate (${m.replace(/^.*?: /, "")}): use an operator certificate signed by its operator CA`);
      }
      if (/self.signed|verify|unable to get|altnames|Hostname\/IP/i.test(m)) {
        return done(`cannot verify the server's certificate at ${server} (${m}): is --ca the CA that signed it?`);
      }
      done(`cannot reach the server at ${server}: ${m}`);
    });
  });
}
