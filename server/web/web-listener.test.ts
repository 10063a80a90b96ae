import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "node:https";
import type { AddressInfo } from "node:net";
import type { Browser } from "playwright-core";
import { testBackends, type TestDatabase } from "../../test/helpers/databases.js";
import { chromiumPath, collectErrors, launchBrowser, screenshot } from "../../test/helpers/browser.js";
import { ecdsaSelfSigned, startTestServer, type TestServer } from "../../test/helpers/server.js";
import { isLoopbackHost } from "./web-listener.js";

describe("loopback addresses", () => {
  it("are 127.0.0.0/8, ::1 and localhost; every-interface binds are not", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ["", "0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "localhost.evil.example", "128.0.0.1"]) expect(isLoopbackHost(h), h).toBe(false);
  });
});

// Off loopback the web view is HTTPS behind the operator CA: a browser
// without an operator certificate gets no page at all.
describe.skipIf(!chromiumPath)("web view on a non-loopback address", () => {
  let t: TestServer & { db: TestDatabase };
  let browser: Browser;
  let origin: string;

  beforeAll(async () => {
    [t, browser] = await Promise.all([startTestServer(testBackends()[0]!, { webListenAddress: "0.0.0.0:0" }), launchBrowser()]);
    origin = `https://127.0.0.1:${(t.server.webView!.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it("serves HTTPS and says so", () => {
    expect(t.server.webView!.mtls).toBe(true);
    expect(t.server.webView!.url).toMatch(/^https:\/\/localhost:\d+\/$/);
  });

  it("refuses a browser without an operator client certificate", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await expect(page.goto(`${origin}/`)).rejects.toThrow(/net::ERR_/);
    await context.close();
  });

  it("serves a browser that presents the operator certificate", async () => {
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      clientCertificates: [{ origin, cert: Buffer.from(t.pki.operator.cert), key: Buffer.from(t.pki.operator.key) }],
    });
    const page = await context.newPage();
    const errors = collectErrors(page);
    const res = await page.goto(`${origin}/`);
    expect(res?.status()).toBe(200);
    expect(await page.locator("h1").textContent()).toBe("Fleet overview");
    await expect.poll(() => page.locator("#live").textContent()).toBe("live");
    await screenshot(page, "overview-mtls");
    expect(errors).toEqual([]);
    await context.close();
  });

  it("refuses a client certificate from outside the operator CA", async () => {
    const stranger = await ecdsaSelfSigned();
    const attempt = (identity?: { cert: string; key: string }) =>
      new Promise<number | undefined>((resolve, reject) =>
        request(`${origin}/`, { rejectUnauthorized: false, ...identity }, (res) => resolve(res.resume().statusCode)).on("error", reject).end(),
      );
    await expect(attempt(stranger)).rejects.toThrow();
    await expect(attempt()).rejects.toThrow();
    expect(await attempt(t.pki.operator)).toBe(200);
  });
});
