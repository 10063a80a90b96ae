import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { request } from "node:http";
import type { Browser, Page } from "playwright-core";
import { databaseForTests } from "../../bmdb/bmdb.js";
import { keyFingerprint } from "../../lib/fingerprint.js";
import { testBackends } from "../../test/helpers/databases.js";
import { chromiumPath, collectErrors, launchBrowser, screenshot } from "../../test/helpers/browser.js";
import { codeOf, newAgent, startTestServer, type TestAgent, type TestServer } from "../../test/helpers/server.js";
import type { TestDatabase } from "../../test/helpers/databases.js";

// The web view in a real browser: pages load without console errors (CSP
// violations included), filters, search and keyset paging work, a heartbeat
// shows up on an open page without reload, the machine page decodes the
// hardware report and hides node parameters, and a feed gap is announced.

describe.skipIf(!chromiumPath).each(testBackends())("web view on $name", (backend) => {
  let t: TestServer & { db: TestDatabase };
  let browser: Browser;
  let base: string;
  const ids: string[] = [];
  let watched: string;
  let agent: TestAgent;

  beforeAll(async () => {
    [t, browser] = await Promise.all([startTestServer(backend, { webListenAddress: "127.0.0.1:0" }), launchBrowser()]);
    base = t.server.webView!.url;
    for (let i = 0; i < 5; i++) ids.push(await t.bmdb.createMachine({ provider: { provider: i < 3 ? "equinix" : "ovh", providerId: `rack12-${i}` } }));
    ids.sort();
    watched = ids[1]!;
    agent = await newAgent(t.server.publicAddress, t.pki);
    await t.bmdb.registerAgent(watched, agent.publicKey);
  });
  afterAll(async () => {
    agent?.client.close();
    await browser?.close();
    await t?.stop();
  });

  async function open(path: string): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage();
    const errors = collectErrors(page);
    const res = await page.goto(base.replace(/\/$/, "") + path);
    expect(res?.status()).toBe(200);
    return { page, errors };
  }
  const rows = (page: Page) => page.locator("#machines tbody tr").evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-machine")!));

  it("serves the overview with the fleet counters and pictures, no console errors, and security headers", async () => {
    const { page, errors } = await open("/");
    const res = await page.request.get(base);
    expect(res.headers()["content-security-policy"]).toMatch(/script-src 'self'.*frame-ancestors 'none'/);
    expect(res.headers()["x-frame-options"]).toBe("DENY");
    // The first view may get the reading primed at start (0 machines), at once, and re-reads the new one by itself.
    await expect.poll(() => page.locator(".counter", { hasText: "machines" }).first().locator(".value").textContent(), { timeout: 5_000 }).toBe("5");
    await expect.poll(() => page.locator("#live").textContent()).toBe("live");
    expect(await page.locator("svg.chart").count()).toBe(3);
    expect(await page.locator("svg.chart text.label").allTextContents()).toEqual(["equinix", "ovh"]);
    await screenshot(page, `overview-${backend.name}`);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("filters, searches and pages through machines in ID order", async () => {
    const { page, errors } = await open("/machines?size=2");
    const seen: string[] = [];
    for (;;) {
      seen.push(...(await rows(page)));
      const next = page.locator("#next-page");
      if ((await next.count()) === 0) break;
      await next.click();
      await page.waitForLoadState();
    }
    expect(seen).toEqual(ids);
    // Filters through the form, as a person would.
    await page.goto(`${base}machines`);
    await page.selectOption("select[name=heartbeat]", "never");
    await page.fill("form.filters input[name=provider]", "ovh");
    await page.click("form.filters button[type=submit]");
    await page.waitForURL(/provider=ovh/);
    const ovh = (await Promise.all(ids.map(async (id) => ((await t.bmdb.getMachine(id)).provided?.provider === "ovh" ? id : undefined)))).filter(Boolean);
    expect(await rows(page)).toEqual(ovh);
    // The header's search box: provider ID prefix, then key fingerprint prefix.
    await page.fill("header input[name=q]", "rack12-4");
    await page.press("header input[name=q]", "Enter");
    await page.waitForURL(/q=rack12-4/);
    expect(await rows(page)).toHaveLength(1);
    await page.goto(`${base}machines?q=${keyFingerprint(agent.publicKey).slice(0, 12)}`);
    expect(await rows(page)).toEqual([watched]);
    // Sorting the page shown by a column, then back.
    await page.goto(`${base}machines`);
    await page.click("th[data-sort=provider] button");
    const byProvider = await page.locator("#machines tbody tr td:nth-child(2)").allTextContents();
    expect(byProvider).toEqual([...byProvider].sort());
    await page.click("th[data-sort=provider] button");
    expect(await page.locator("#machines tbody tr td:nth-child(2)").allTextContents()).toEqual([...byProvider].reverse());
    await screenshot(page, `machines-${backend.name}`);
    expect(errors).toEqual([]);
    // Bad input is a clear 400 page.
    const bad = await page.goto(`${base}machines?heartbeat=old`);
    expect(bad?.status()).toBe(400);
    expect(await page.locator("main").textContent()).toContain("heartbeat must be fresh, stale or never");
    await page.close();
  });

  it("shows a heartbeat sent while the page is open, without a reload", async () => {
    const { page, errors } = await open("/machines");
    await expect.poll(() => page.locator("#live").textContent()).toBe("live");
    const row = page.locator(`tr[data-machine="${watched}"]`);
    expect(await row.locator(".badge").first().textContent()).toBe("never");
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await agent.client.heartbeat({ machineId: watched });
    await expect.poll(() => row.locator(".badge").first().textContent(), { timeout: 10_000 }).toBe("fresh");
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    // The age keeps counting on its own.
    const age = row.locator("time.age");
    expect(await age.textContent()).toMatch(/^\ds ago$/);
    await expect.poll(() => age.textContent(), { timeout: 5_000 }).not.toBe(await age.textContent());
    expect(errors).toEqual([]);
    await page.close();
  });

  it("lists an agent asking for admission as it asks, re-keyed against the machine's key, with the command to decide", async () => {
    const { page, errors } = await open("/agents");
    await expect.poll(() => page.locator("#live").textContent()).toBe("live");
    const stranger = await newAgent(t.server.publicAddress, t.pki);
    try {
      // Refused as before; the request is recorded and announced.
      expect(await codeOf(stranger.client.heartbeat({ machineId: watched }))).toBe(16);
      const fingerprint = keyFingerprint(stranger.publicKey);
      const row = page.locator(`tr[data-key="${fingerprint}"]`);
      await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
      expect(await row.getAttribute("data-machine")).toBe(watched);
      expect(await row.locator("td").nth(3).textContent()).toBe(keyFingerprint(agent.publicKey).slice(0, 16));
      expect(await page.locator("p.summary").textContent()).toContain("bmctl agent accept MACHINE FINGERPRINT");
      const rejected = await page.goto(`${base}agents?state=rejected`);
      expect(rejected?.status()).toBe(200);
      expect(await page.locator(`tr[data-key="${fingerprint}"]`).count()).toBe(0);
      expect(errors).toEqual([]);
      expect((await page.goto(`${base}agents?after=nonsense`))?.status()).toBe(400);
    } finally {
      stranger.client.close();
      await page.close();
    }
  });

  it("shows every tag of a machine with the decoded hardware report, never the node parameters, and its history", async () => {
    const { page, errors } = await open(`/machines/${watched}`);
    await expect.poll(() => page.locator("#live").textContent()).toBe("live");
    await agent.client.heartbeat({
      machineId: watched,
      hardwareReport: {
        report: { manufacturer: "ACME", product: "Rack Server 9", memoryInstalledBytes: 256n << 30n, memoryUsableRatio: 0.98, cpu: [{ model: "Xeon Gold", cores: 24, hardwareThreads: 48 }] },
        warning: ["no SMART data for /dev/sda"],
      },
    });
    await expect.poll(() => page.locator("tr[data-tag=hardware] td").textContent(), { timeout: 10_000 }).toContain("ACME Rack Server 9");
    expect(await page.locator("tr[data-tag=cpu] td").textContent()).toContain("24 cores, 48 threads — Xeon Gold");
    expect(await page.locator("tr[data-tag=memory] td").textContent()).toContain("256 GiB installed");
    expect(await page.locator("tr[data-tag=warning] td").textContent()).toBe("no SMART data for /dev/sda");
    expect(await page.locator("tr[data-tag='agent key'] td").textContent()).toContain(keyFingerprint(agent.publicKey));
    await t.operator.setInstallationRequest({ machineId: watched, generation: 3n, rootDevice: "/dev/nvme0n1", nodeParameters: Buffer.from("join-token=SECRET-TOKEN") });
    await expect.poll(() => page.locator("tr[data-tag='node parameters'] td").count(), { timeout: 10_000 }).toBe(1);
    expect(await page.locator("tr[data-tag='node parameters'] td").textContent()).toMatch(/^23 bytes, sha256 [0-9a-f]{16}…$/);
    expect(await page.content()).not.toContain("SECRET-TOKEN");
    expect(await page.locator("#history tbody tr td:nth-child(2)").allTextContents()).toEqual(
      expect.arrayContaining(["installation requested", "hardware report changed", "first heartbeat", "agent registered", "machine created"]),
    );
    await screenshot(page, `machine-${backend.name}`);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("pages through a machine's history", async () => {
    for (let i = 0; i < 55; i++) await t.bmdb.updateProvider(ids[0]!, { status: `s${i}` });
    const { page } = await open(`/machines/${ids[0]}`);
    expect(await page.locator("#history tbody tr").count()).toBe(50);
    await page.click("#older-history");
    await page.waitForURL(/before=/);
    expect(await page.locator("#history tbody tr").count()).toBe(6);
    expect(await page.locator("#older-history").count()).toBe(0);
    await page.close();
  });

  it("says so when the live feed was interrupted, and re-reads the page", async () => {
    const { page, errors } = await open("/machines");
    await expect.poll(() => page.locator("#live").textContent()).toBe("live");
    if (backend.name === "postgres") {
      // The server's LISTEN connection dies: the feed itself has a gap.
      await sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query ilike 'listen %'`.execute(databaseForTests(t.bmdb));
      await expect.poll(() => page.locator("#notice").textContent(), { timeout: 10_000 }).toMatch(/live feed had a gap/);
    }
    // The browser's own stream is cut (as when it fell too far behind).
    const refreshed = await page.evaluate(() => document.body.dataset.refreshed ?? "0");
    expect((await page.request.post(`${base}machines`)).status()).toBe(405);
    t.server.webView!.live.closeAll();
    await expect.poll(() => page.locator("#notice").textContent(), { timeout: 10_000 }).toMatch(/interrupted and are back/);
    await expect.poll(() => page.evaluate(() => document.body.dataset.refreshed ?? "0")).not.toBe(refreshed);
    expect(errors.filter((e) => !/EventSource|net::ERR/.test(e))).toEqual([]);
    await page.close();
  });

  it("answers only loopback host names on plain HTTP", async () => {
    const status = (host: string) =>
      new Promise<number | undefined>((resolve, reject) => request(base, { headers: { host } }, (res) => resolve(res.resume().statusCode)).on("error", reject).end());
    expect(await status("evil.example")).toBe(421);
    expect(await status("evil.example:4244")).toBe(421);
    expect(await status(new URL(base).host)).toBe(200);
    expect(await status("localhost:4244")).toBe(200);
  });
});
