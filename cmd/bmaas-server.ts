#!/usr/bin/env -S node --max-semi-space-size=32 --no-allocation-site-pretenuring
import { Command } from "commander";
import { relative } from "node:path";
import { pino } from "pino";
import { openBmdb, type Bmdb } from "../bmdb/index.js";
import { ServerConfig, type ServerConfigValues, type ServerFlags } from "../server/config.js";
import { DEV_CERT_FILES } from "../lib/dev-cert-files.js";
import { BmaasServer } from "../server/server.js";
import { BmdbConfig, type BmdbFlags } from "./private/bmdb-flags.js";
import { fail } from "./private/fail.js";

const NAME = "bmaas-server";

function devBanner(config: ServerConfigValues, server: BmaasServer): string {
  const dir = config.devCerts!.dir;
  const shown = relative(process.cwd(), dir) || ".";
  const port = (addr: string) => addr.slice(addr.lastIndexOf(":") + 1);
  return [
    "",
    `bmaas-server is running on development certificates (${config.devCerts!.created ? "created now" : "reused"}) in ${shown}/`,
    `  agents     TLS on ${server.publicAddress}: dial localhost:${port(server.publicAddress)} with an Ed25519 self-signed`,
    `             client certificate and trust ${shown}/${DEV_CERT_FILES.caCert}`,
    `  operators  mTLS on ${server.internalAddress}: ${shown}/${DEV_CERT_FILES.operatorCert} + ${DEV_CERT_FILES.operatorKey}`,
    ...(server.metricsAddress ? [`  metrics    http://${server.metricsAddress}/metrics`] : []),
    ...(server.webView ? [`  web        ${server.webView.url}   (read-only fleet view${server.webView.mtls ? ", operator client certificate required" : ""})`] : []),
    `  bmctl      npx bmctl machine create      (finds these certificates and this server by itself)`,
    `             npx bmctl agent register MACHINE_ID PUBKEY`,
    `             npx bmctl machine list | get MACHINE_ID | watch`,
    `  agent      npx bmaas-agent keygen --key agent.key, then`,
    `             npx bmaas-agent run --server localhost:${port(server.publicAddress)} --ca ${shown}/${DEV_CERT_FILES.caCert} --machine-id ID --key agent.key`,
    "",
  ].join("\n");
}

async function main(): Promise<void> {
  const program = new Command(NAME)
    .description("Bare-metal agent callback server: agents heartbeat over TLS, operators steer over mTLS.")
    .configureOutput({ outputError: (str, write) => write(str.trim().split("\n")[0] + "\n") })
    .showHelpAfterError(false)
    .addHelpText("after", "\nExample:\n  bmaas-server --dev-certs .bmaas-dev/certs --database-url .bmaas-dev/db\n");
  ServerConfig.registerFlags(program);
  BmdbConfig.registerFlags(program);
  program.parse();
  const flags = program.opts<ServerFlags & BmdbFlags>();

  let config: ServerConfigValues;
  let db: { url: string; options: Parameters<typeof openBmdb>[1] };
  try {
    db = BmdbConfig.fromFlags(flags);
    config = await ServerConfig.resolve(flags);
  } catch (e) {
    fail(NAME, (e as Error).message, 2);
  }

  const logger = pino({ level: config.logLevel, base: { svc: NAME } });
  // Said once per change, not once per failed call.
  const opening = openBmdb(db.url, {
    ...db.options,
    onDatabaseState: (state, reason) =>
      state === "up" ? logger.info("database reachable again") : logger.error({ reason }, "database unreachable: answering UNAVAILABLE until it is back"),
  });
  // The server starts its agent listener while the database opens (PGlite
  // takes seconds), and serves heartbeats once it is open.
  let server: BmaasServer;
  try {
    server = await BmaasServer.start({ ...config, bmdb: opening, logger });
  } catch (e) {
    let bmdb: Bmdb;
    try {
      bmdb = await opening;
    } catch (openError) {
      fail(NAME, `cannot open database: ${(openError as Error).message}`);
    }
    await bmdb.close().catch(() => {});
    fail(NAME, (e as Error).message);
  }
  const bmdb = await opening;
  if (config.devCerts) process.stdout.write(devBanner(config, server) + "\n");

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "stopping: no new connections, finishing in-flight RPCs");
    const t0 = performance.now();
    await server.stop();
    const t1 = performance.now();
    await bmdb.close();
    // How long each half took: a restart's downtime is the sum.
    logger.info({ listenersMs: Math.round(t1 - t0), databaseMs: Math.round(performance.now() - t1) }, "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

void main();
