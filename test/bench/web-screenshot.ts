// Regenerates the README's screenshots (docs/web-*.png): a fleet of
// BENCH_MACHINES (20,000) in a fresh PostgreSQL database, 200 real agents
// heartbeating over TLS for a minute and a half at a changing rate (the traffic
// picture), one hardware report; then Chromium photographs the pages.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { chromium } from "playwright-core";
import { openBmdb } from "../../bmdb/index.js";
import { createDevPki } from "../../lib/certs.js";
import { BmaasServer } from "../../server/server.js";
import { newAgent } from "../helpers/server.js";
import { createBenchDatabase } from "./bench-database.js";
import { populateFleet } from "./populate-fleet.js";

const MACHINES = Number(process.env.BENCH_MACHINES ?? 20_000);
const SECONDS = Number(process.env.SCREENSHOT_SECONDS ?? 90);
const OUT = join(import.meta.dirname, "..", "..", "..", "docs");

async function main(): Promise<void> {
  const database = await createBenchDatabase("bmaas_webshot");
  const bmdb = await openBmdb(database.url);
  const pki = await createDevPki();
  const server = await BmaasServer.start({
    publicListenAddress: "127.0.0.1:0",
    internalListenAddress: "127.0.0.1:0",
    webListenAddress: "127.0.0.1:0",
    serverCert: pki.server.cert,
    serverKey: pki.server.key,
    operatorCa: pki.ca.cert,
    maxRequestBytes: 4 << 20,
    staleSweepIntervalMs: 0,
    bmdb,
    logger: pino({ level: "silent" }),
  });
  try {
    await populateFleet(bmdb, MACHINES);
    const agents = [];
    for (let i = 0; i < 200; i++) {
      const id = await bmdb.createMachine({ provider: { provider: "hetzner", providerId: `fsn1-r12-${String(i).padStart(3, "0")}` } });
      await bmdb.updateProvider(id, { location: "fsn1" });
      const agent = await newAgent(server.publicAddress, pki);
      await bmdb.registerAgent(id, agent.publicKey);
      agents.push({ id, agent });
    }
    const first = agents[0]!;
    await first.agent.client.heartbeat({
      machineId: first.id,
      hardwareReport: {
        report: {
          manufacturer: "Supermicro",
          product: "SYS-1029U",
          serialNumber: "S12345X",
          memoryInstalledBytes: 384n << 30n,
          memoryUsableRatio: 0.985,
          cpu: [{ model: "Intel Xeon Gold 6248R", cores: 24, hardwareThreads: 48 }, { model: "Intel Xeon Gold 6248R", cores: 24, hardwareThreads: 48 }],
          blockDevice: [{ vendor: "Samsung", deviceModel: "PM983", capacityBytes: 1920n * 10n ** 9n, serialNumber: "S4GV1" }],
          networkInterface: [{ mac: Buffer.from("3cecef1a2b3c", "hex"), driver: "ice", linkUp: true, currentSpeedBytes: 25n * 10n ** 9n / 8n }],
        },
        warning: ["no SMART data for /dev/nvme0n1"],
      },
    });
    const until = Date.now() + SECONDS * 1000;
    while (Date.now() < until) {
      // A rate that swells and ebbs, so that the traffic picture has a shape.
      const phase = (until - Date.now()) / 1000;
      const n = Math.round(60 + 50 * Math.sin(phase / 12));
      await Promise.all(agents.slice(0, n).map((a) => a.agent.client.heartbeat({ machineId: a.id })));
      await new Promise((r) => setTimeout(r, 250));
    }
    agents.forEach((a) => a.agent.client.close());
    mkdirSync(OUT, { recursive: true });
    const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const base = server.webView!.url;
    await page.goto(base);
    await page.waitForSelector("#live.on");
    await page.screenshot({ path: join(OUT, "web-overview.png"), fullPage: true });
    await page.goto(`${base}machines?provider=hetzner&size=20`);
    await page.waitForSelector("#live.on");
    await page.screenshot({ path: join(OUT, "web-machines.png"), fullPage: true });
    await page.goto(`${base}machines/${first.id}`);
    await page.waitForSelector("#live.on");
    await page.screenshot({ path: join(OUT, "web-machine.png"), fullPage: true });
    await browser.close();
    process.stdout.write(`screenshots in ${OUT}\n`);
  } finally {
    await server.stop();
    await bmdb.close();
    await database.drop();
  }
}

await main();
