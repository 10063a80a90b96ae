import * as grpc from "@grpc/grpc-js";
import { request as httpsRequest } from "node:https";
import { collectDefaultMetrics, Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testBackends } from "../test/helpers/databases.js";
import { codeOf, newAgent, startTestServer } from "../test/helpers/server.js";
import { PER_HANDLE_DEFAULT_METRICS } from "./metrics.js";

/** Parses the Prometheus text format into "name{labels}" → value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^(\S+?(?:\{.*\})?)\s+(\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

async function scrape(address: string): Promise<Map<string, number>> {
  const res = await fetch(`http://${address}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/text\/plain/);
  return parseMetrics(await res.text());
}

describe("Prometheus metrics", () => {
  let t: Awaited<ReturnType<typeof startTestServer>>;

  beforeAll(async () => {
    t = await startTestServer(testBackends()[0]!, { metricsListenAddress: "127.0.0.1:0", fleetStatsRefreshMs: 3_600_000 });
  });
  afterAll(async () => t?.stop());

  it("counts heartbeats by code, transactions, RPC latency, and shows fleet gauges", async () => {
    // The fleet gauges are first set by a refresh the server starts with: wait
    // for it, so that its transaction is not counted below.
    let before = await scrape(t.server.metricsAddress!);
    for (let i = 0; i < 100 && !before.has('bmaas_fleet_machines{state="all"}'); i++) {
      await new Promise((r) => setTimeout(r, 20));
      before = await scrape(t.server.metricsAddress!);
    }
    const { machineId } = await t.operator.createMachine({ provider: "equinix", providerId: "m1" });
    const agent = await newAgent(t.server.publicAddress, t.pki);
    await t.operator.registerAgent({ machineId, publicKey: agent.publicKey });
    for (let i = 0; i < 3; i++) await agent.client.heartbeat({ machineId });
    const stranger = await newAgent(t.server.publicAddress, t.pki);
    for (let i = 0; i < 2; i++) expect(await codeOf(stranger.client.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await codeOf(agent.client.heartbeat({ machineId: "nope" }))).toBe(grpc.status.INVALID_ARGUMENT);
    agent.client.close();
    stranger.client.close();
    await t.server.metrics.refreshFleet();

    const after = await scrape(t.server.metricsAddress!);
    const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(delta('bmaas_agent_heartbeats_total{code="OK"}')).toBe(3);
    expect(delta('bmaas_agent_heartbeats_total{code="UNAUTHENTICATED"}')).toBe(2);
    expect(delta('bmaas_agent_heartbeats_total{code="INVALID_ARGUMENT"}')).toBe(1);
    // createMachine, registerAgent, 5 heartbeat batches (3 accepted, 2 refused: one
    // statement each), the fleet refresh; the malformed one never reached bmdb.
    expect(delta("bmdb_transaction_executed")).toBe(8);
    expect(after.get("bmdb_transaction_failed")).toBe(0);
    expect(after.has("bmdb_transaction_retried")).toBe(true);
    expect(delta('bmaas_rpc_duration_seconds_count{service="bmaas.operator.v1.OperatorService",method="CreateMachine",code="OK"}')).toBe(1);
    expect(delta('bmaas_rpc_duration_seconds_count{service="cloud.bmaas.server.api.AgentCallback",method="Heartbeat",code="OK"}')).toBe(3);
    expect(after.get('bmaas_fleet_machines{state="all"}')).toBe(1);
    expect(after.get('bmaas_fleet_machines{state="heartbeating"}')).toBe(1);
    expect(after.get("process_resident_memory_bytes")).toBeGreaterThan(0);
    // Not the defaults that walk every handle on each scrape (metrics.ts),
    // which prom-client does register by those names.
    const defaults = new Registry();
    collectDefaultMetrics({ register: defaults });
    for (const name of PER_HANDLE_DEFAULT_METRICS) expect(defaults.getSingleMetric(name), name).toBeDefined();
    for (const name of PER_HANDLE_DEFAULT_METRICS) expect([...after.keys()].filter((k) => k === name || k.startsWith(`${name}{`))).toEqual([]);
    expect(after.has("process_max_fds")).toBe(true);
    // 3 OK + 2 refused heartbeats went through the group-commit queue, in one batch each here.
    expect(delta("bmaas_heartbeat_batched_total")).toBe(5);
    expect(delta("bmaas_heartbeat_batches_total")).toBe(5);
    // The same five batches in the batch histograms: one heartbeat each, each
    // timed from its statement's start to its commit.
    expect(delta("bmaas_heartbeat_batch_size_count")).toBe(5);
    expect(delta("bmaas_heartbeat_batch_size_sum")).toBe(5);
    expect(delta('bmaas_heartbeat_batch_size_bucket{le="1"}')).toBe(5);
    expect(delta("bmaas_heartbeat_batch_duration_seconds_count")).toBe(5);
    expect(delta("bmaas_heartbeat_batch_duration_seconds_sum")).toBeGreaterThan(0);
    expect(delta('bmaas_heartbeat_batch_duration_seconds_bucket{le="+Inf"}')).toBe(5);
    expect(after.get("bmaas_heartbeat_inflight")).toBe(0);
    // Both agents closed their connections: the open-connections gauge comes back to 0.
    let open = after.get('bmaas_agent_connections{state="open"}');
    for (let i = 0; i < 100 && open !== 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      open = (await scrape(t.server.metricsAddress!)).get('bmaas_agent_connections{state="open"}');
    }
    expect(open).toBe(0);
    expect(after.get("bmdb_transaction_errors")).toBe(0);
    expect((await fetch(`http://${t.server.metricsAddress}/other`)).status).toBe(404);
  });
});

describe("metrics behind the operator mTLS", () => {
  it("refuses a scraper without an operator certificate and serves one with it", async () => {
    const t = await startTestServer(testBackends()[0]!, { metricsListenAddress: "127.0.0.1:0", metricsMtls: true });
    try {
      const [host, port] = [t.server.metricsAddress!.split(":")[0]!, Number(t.server.metricsAddress!.split(":")[1])];
      const get = (withCert: boolean) =>
        new Promise<number>((resolve, reject) => {
          const req = httpsRequest(
            {
              host,
              port,
              path: "/metrics",
              ca: t.pki.ca.cert,
              servername: "localhost",
              ...(withCert && { cert: t.pki.operator.cert, key: t.pki.operator.key }),
            },
            (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            },
          );
          req.on("error", reject);
          req.end();
        });
      expect(await get(true)).toBe(200);
      await expect(get(false)).rejects.toThrow();
    } finally {
      await t.stop();
    }
  });
});
