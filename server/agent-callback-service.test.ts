import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bmdb, type Database } from "../bmdb/index.js";
import { keyFingerprint } from "../lib/fingerprint.js";
import { EFISupport, NodeSchema } from "../gen/cloud/agent/api/hwreport_pb.js";
import { AgentCallback as NewAgentCallback } from "../gen/cloud/agent/api/agent_callback_pb.js";
import {
  AgentCallback,
  AgentHardwareReportSchema,
  HeartbeatRequestSchema,
} from "../gen/cloud/bmaas/server/api/agent_pb.js";
import { testBackends } from "../test/helpers/databases.js";
import {
  codeOf,
  ecdsaSelfSigned,
  errorOf,
  newAgent,
  startServerOn,
  startTestServer,
  testPki,
  type TestAgent,
} from "../test/helpers/server.js";
import { createClient } from "../lib/grpc-adapter.js";
import { rawEd25519PublicKey } from "../lib/certs.js";
import * as x509 from "@peculiar/x509";
import { createPrivateKey, webcrypto } from "node:crypto";
import { parseHeartbeatRequest } from "./heartbeat-request.js";

const OWN = { "grpc.use_local_subchannel_pool": 1 };

/** An Ed25519 leaf signed by an Ed25519 issuer: the PEM chain (leaf first) and the leaf's key. */
async function ed25519Chain(): Promise<{ chain: string; key: string }> {
  const alg = { name: "Ed25519" };
  const subtle = webcrypto.subtle;
  const issuerKeys = (await subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const leafKeys = (await subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + 3_600_000);
  const issuer = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: "02", name: "CN=issuer", notBefore, notAfter, keys: issuerKeys, signingAlgorithm: alg });
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "03",
    subject: "CN=leaf",
    issuer: issuer.subject,
    notBefore,
    notAfter,
    publicKey: leafKeys.publicKey,
    signingKey: issuerKeys.privateKey,
    signingAlgorithm: alg,
  });
  const pkcs8 = Buffer.from(await subtle.exportKey("pkcs8", leafKeys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }).export({ format: "pem", type: "pkcs8" }).toString();
  return { chain: `${leaf.toString("pem")}\n${issuer.toString("pem")}\n`, key };
}

/** Sends exactly these request bytes, so tests control what is on the wire. */
function rawHeartbeat(address: string, credentials: grpc.ChannelCredentials, body: Uint8Array, path = "/cloud.bmaas.server.api.AgentCallback/Heartbeat") {
  const client = new grpc.Client(address, credentials, OWN);
  return new Promise<Uint8Array>((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => new Uint8Array(b),
      body,
      (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(res!);
      },
    );
  });
}

describe.each(testBackends())("AgentCallback on $name", (backend) => {
  let t: Awaited<ReturnType<typeof startTestServer>>;
  let address: string;

  beforeAll(async () => {
    t = await startTestServer(backend);
    address = t.server.publicAddress;
  });
  afterAll(async () => t?.stop());

  /** A machine with a registered agent key, and that agent. */
  async function registeredAgent(): Promise<{ machineId: string; agent: TestAgent }> {
    const { machineId } = await t.operator.createMachine({});
    const agent = await newAgent(address, t.pki);
    await t.operator.registerAgent({ machineId, publicKey: agent.publicKey });
    return { machineId, agent };
  }

  describe("transport authentication", () => {
    it("refuses a client that does not speak TLS with UNAUTHENTICATED", async () => {
      const { machineId } = await registeredAgent();
      const c = createClient(AgentCallback, address, grpc.credentials.createInsecure(), OWN);
      const err = await errorOf(c.heartbeat({ machineId }));
      c.close();
      expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    });

    it("refuses a TLS client without a certificate with UNAUTHENTICATED", async () => {
      const { machineId } = await registeredAgent();
      const c = createClient(AgentCallback, address, grpc.credentials.createSsl(Buffer.from(t.pki.ca.cert)), OWN);
      expect(await codeOf(c.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
      c.close();
    });

    it("refuses a certificate whose key is not Ed25519 with UNAUTHENTICATED", async () => {
      const { machineId } = await registeredAgent();
      const ec = await ecdsaSelfSigned();
      const creds = grpc.credentials.createSsl(Buffer.from(t.pki.ca.cert), Buffer.from(ec.key), Buffer.from(ec.cert));
      const c = createClient(AgentCallback, address, creds, OWN);
      expect(await codeOf(c.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
      c.close();
    });

    it("refuses more than one client certificate with UNAUTHENTICATED", async () => {
      // A registered Ed25519 key, presented in a leaf followed by the Ed25519
      // certificate that issued it: the key alone would be accepted.
      const { machineId } = await t.operator.createMachine({});
      const { chain, key } = await ed25519Chain();
      await t.operator.registerAgent({ machineId, publicKey: rawEd25519PublicKey(createPrivateKey(key)) });
      const creds = grpc.credentials.createSsl(Buffer.from(t.pki.ca.cert), Buffer.from(key), Buffer.from(chain));
      const c = createClient(AgentCallback, address, creds, OWN);
      expect(await codeOf(c.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
      c.close();
      // The same leaf alone is that machine's agent.
      const leafOnly = grpc.credentials.createSsl(Buffer.from(t.pki.ca.cert), Buffer.from(key), Buffer.from(chain.split("-----END CERTIFICATE-----")[0]! + "-----END CERTIFICATE-----\n"));
      const alone = createClient(AgentCallback, address, leafOnly, OWN);
      expect(await codeOf(alone.heartbeat({ machineId }))).toBe(grpc.status.OK);
      alone.close();
    });
  });

  it("answers INVALID_ARGUMENT for a machine_id that is not a UUID", async () => {
    const { agent } = await registeredAgent();
    const err = await errorOf(agent.client.heartbeat({ machineId: "not-a-uuid" }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    agent.client.close();
  });

  it("gives the same UNAUTHENTICATED answer for an unknown machine and for a wrong key", async () => {
    const { machineId } = await registeredAgent();
    const stranger = await newAgent(address, t.pki);
    const unknown = await errorOf(stranger.client.heartbeat({ machineId: "3f1e3a3c-8a9a-4c35-9f39-6f0b9b0f0c11" }));
    const wrongKey = await errorOf(stranger.client.heartbeat({ machineId }));
    expect(unknown.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(wrongKey.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(wrongKey.details).toBe(unknown.details);
    expect(unknown.details).not.toContain(machineId);
    // Nothing was recorded for the machine.
    const m = await t.operator.getMachine({ machineId });
    expect(m.machine?.agentHeartbeat).toBeUndefined();
    stranger.client.close();
  });

  it("records the heartbeat on success and answers both service names", async () => {
    const { machineId, agent } = await registeredAgent();
    const before = Date.now();
    const res = await agent.client.heartbeat({ machineId });
    expect(res.installationRequest).toBeUndefined();
    const m1 = (await t.operator.getMachine({ machineId })).machine!;
    const at1 = Number(m1.agentHeartbeat!.lastHeartbeatAt!.seconds) * 1000;
    expect(at1).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);

    const newer = createClient(NewAgentCallback, address, agent.credentials, OWN);
    await newer.heartbeat({ machineId: machineId.toUpperCase() });
    newer.close();
    const m2 = (await t.operator.getMachine({ machineId })).machine!;
    expect(m2.agentHeartbeat!.lastHeartbeatAt!.nanos + Number(m2.agentHeartbeat!.lastHeartbeatAt!.seconds) * 1e9).toBeGreaterThan(
      m1.agentHeartbeat!.lastHeartbeatAt!.nanos + Number(m1.agentHeartbeat!.lastHeartbeatAt!.seconds) * 1e9,
    );
    agent.client.close();
  });

  it("stores the hardware report byte for byte, unknown fields included, and shows a decoded view", async () => {
    const { machineId, agent } = await registeredAgent();
    const node = create(NodeSchema, {
      manufacturer: "Supermicro",
      product: "X11",
      memoryInstalledBytes: 64n * 1024n ** 3n,
      memoryUsableRatio: 0.97,
      cpu: [{ vendor: "GenuineIntel", model: "Xeon", cores: 16, hardwareThreads: 32, architecture: { case: "x8664", value: { family: 6, model: 85, stepping: 4 } } }],
      efiSupport: EFISupport.EFI_SUPPORT_ENABLED,
    });
    const known = toBinary(AgentHardwareReportSchema, create(AgentHardwareReportSchema, { report: node, warning: ["no SMART data"] }));
    // A field of a newer agent (number 99) the server does not know.
    const w = new BinaryWriter();
    w.raw(known).tag(99, WireType.LengthDelimited).string("future field");
    const hwBytes = w.finish();
    const body = new BinaryWriter().tag(1, WireType.LengthDelimited).string(machineId).tag(2, WireType.LengthDelimited).bytes(hwBytes).finish();

    await rawHeartbeat(address, agent.credentials, body);

    const stored = (await t.bmdb.getMachine(machineId)).hardwareReport!;
    expect(Buffer.from(stored.raw).equals(Buffer.from(hwBytes))).toBe(true);
    expect(stored.json).toMatchObject({ report: { manufacturer: "Supermicro", cpu: [{ hardwareThreads: 32 }] }, warning: ["no SMART data"] });

    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.hardwareReport?.report?.product).toBe("X11");
    expect(m.hardwareReport?.report?.cpu[0]?.hardwareThreads).toBe(32);
    expect(m.hardwareReport?.warnings).toEqual(["no SMART data"]);
    expect(m.hardwareReport?.rawSizeBytes).toBe(BigInt(hwBytes.length));

    // An empty report does not erase the stored one.
    await agent.client.heartbeat({ machineId, hardwareReport: {} });
    const again = (await t.bmdb.getMachine(machineId)).hardwareReport!;
    expect(Buffer.from(again.raw).equals(Buffer.from(hwBytes))).toBe(true);
    agent.client.close();
  });

  it("runs the installation flow: request, resend, success stops it, next request, error stops it", async () => {
    const { machineId, agent } = await registeredAgent();
    expect((await agent.client.heartbeat({ machineId })).installationRequest).toBeUndefined();

    await t.operator.setInstallationRequest({
      machineId,
      generation: 123n,
      rootDevice: "/dev/nvme0n1",
      osImage: { scheme: "oci", host: "registry.example", repository: "os/metropolis", tag: "v1", digest: "sha256:abc" },
      nodeParameters: Uint8Array.of(0x0a, 0x02, 0x08, 0x01),
    });
    for (let i = 0; i < 3; i++) {
      const r = await agent.client.heartbeat({ machineId });
      expect(r.installationRequest?.generation).toBe(123n);
      expect(r.installationRequest?.type.case).toBe("metropolis");
      const mp = r.installationRequest?.type.value;
      expect(mp?.rootDevice).toBe("/dev/nvme0n1");
      expect(mp?.osImage?.repository).toBe("os/metropolis");
      expect(mp?.osImage?.tag).toBe("v1");
      expect(Array.from(mp?.nodeParameters ?? [])).toEqual([0x0a, 0x02, 0x08, 0x01]);
    }

    // The report's own heartbeat already answers without the request.
    const done = await agent.client.heartbeat({ machineId, installationReport: { generation: 123n, result: { case: "success", value: {} } } });
    expect(done.installationRequest).toBeUndefined();
    expect((await agent.client.heartbeat({ machineId })).installationRequest).toBeUndefined();
    let m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.installationReport).toMatchObject({ generation: 123n, success: true });
    expect(m.installationPending).toBe(false);

    await t.operator.setInstallationRequest({ machineId, generation: 234n, rootDevice: "/dev/sda" });
    expect((await agent.client.heartbeat({ machineId })).installationRequest?.generation).toBe(234n);
    await agent.client.heartbeat({ machineId, installationReport: { generation: 234n, result: { case: "error", value: { error: "disk on fire" } } } });
    expect((await agent.client.heartbeat({ machineId })).installationRequest).toBeUndefined();
    m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.installationReport).toMatchObject({ generation: 234n, success: false, error: "disk on fire" });
    agent.client.close();
  });

  it("answers INVALID_ARGUMENT for an installation report without a result and records nothing", async () => {
    const { machineId, agent } = await registeredAgent();
    const err = await errorOf(agent.client.heartbeat({ machineId, installationReport: { generation: 5n } }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.agentHeartbeat).toBeUndefined();
    expect(m.installationReport).toBeUndefined();
    agent.client.close();
  });

  it("refuses the old key after RegisterAgent with a new one", async () => {
    const { machineId, agent: old } = await registeredAgent();
    await old.client.heartbeat({ machineId });
    const fresh = await newAgent(address, t.pki);
    const reg = await t.operator.registerAgent({ machineId, publicKey: fresh.publicKey });
    expect(reg.keyFingerprint).toBe(keyFingerprint(fresh.publicKey));
    expect(await codeOf(old.client.heartbeat({ machineId }))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await codeOf(fresh.client.heartbeat({ machineId }))).toBe(grpc.status.OK);
    old.client.close();
    fresh.client.close();
  });

  it("refuses requests above the size limit with RESOURCE_EXHAUSTED and writes nothing", async () => {
    const { machineId, agent } = await registeredAgent();
    const big = create(HeartbeatRequestSchema, {
      machineId,
      hardwareReport: { report: { manufacturer: "x".repeat(4 * 1024 * 1024 + 1) } },
    });
    const err = await errorOf(rawHeartbeat(address, agent.credentials, toBinary(HeartbeatRequestSchema, big)));
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.agentHeartbeat).toBeUndefined();
    expect(m.hardwareReport).toBeUndefined();
    agent.client.close();
  });

  it("serves 200 agents heartbeating concurrently, each on its own connection", async () => {
    // Registered 20 at a time: what runs concurrently here is the agents'
    // heartbeats. 200 operator transactions at once waited over the pool's
    // 5 s on a busy CI machine and were rightly answered UNAVAILABLE.
    const agents: { machineId: string; agent: Awaited<ReturnType<typeof newAgent>> }[] = [];
    for (let chunk = 0; chunk < 10; chunk++) {
      agents.push(
        ...(await Promise.all(
          Array.from({ length: 20 }, async () => {
            const { machineId } = await t.operator.createMachine({});
            const agent = await newAgent(address, t.pki);
            await t.operator.registerAgent({ machineId, publicKey: agent.publicKey });
            return { machineId, agent };
          }),
        )),
      );
    }
    const results = await Promise.allSettled(
      agents.map(async ({ machineId, agent }) => {
        for (let i = 0; i < 3; i++) await agent.client.heartbeat({ machineId });
      }),
    );
    agents.forEach(({ agent }) => agent.client.close());
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    const ids = agents.map((a) => a.machineId);
    const { machines: fresh } = await t.bmdb.listMachines({ heartbeat: "fresh" }, 1000);
    expect(fresh.map((m) => m.machineId).filter((id) => ids.includes(id))).toHaveLength(200);
  });
});

describe("AgentCallback with a failing database", () => {
  it("answers UNAVAILABLE without internals when the database is unreachable", async () => {
    // A real driver against a port nothing listens on: every query fails.
    const pool = new pg.Pool({ connectionString: "postgres://nobody@127.0.0.1:1/none", connectionTimeoutMillis: 2000 });
    const bmdb = new Bmdb(new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), { maxAttempts: 1 });
    const pki = await testPki();
    const server = await startServerOn(bmdb, pki);
    try {
      const agent = await newAgent(server.publicAddress, pki);
      const err = await errorOf(agent.client.heartbeat({ machineId: "3f1e3a3c-8a9a-4c35-9f39-6f0b9b0f0c11" }));
      agent.client.close();
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
      expect(err.details).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|postgres/i);
      // The heartbeat (and the fleet-gauge refresh at start) counted as failed transactions.
      expect(bmdb.stats.failed).toBeGreaterThanOrEqual(1);
      // Not ready while the database is down: health says NOT_SERVING (2).
      const creds = grpc.credentials.createSsl(Buffer.from(pki.ca.cert), Buffer.from(pki.operator.key), Buffer.from(pki.operator.cert));
      const health = new grpc.Client(server.internalAddress, creds);
      const check = () =>
        new Promise<number>((resolve, reject) =>
          health.makeUnaryRequest("/grpc.health.v1.Health/Check", (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (err, res) =>
            err ? reject(err) : resolve(res!.length >= 2 ? res![1]! : 0),
          ),
        );
      await expect.poll(check, { timeout: 3000 }).toBe(2);
      health.close();
    } finally {
      await server.stop();
      await bmdb.close();
    }
  });
});

describe("parseHeartbeatRequest", () => {
  it("concatenates a hardware report sent in two parts, as protobuf merging does", async () => {
    const a = toBinary(AgentHardwareReportSchema, create(AgentHardwareReportSchema, { warning: ["a"] }));
    const b = toBinary(AgentHardwareReportSchema, create(AgentHardwareReportSchema, { warning: ["b"] }));
    const id = "3f1e3a3c-8a9a-4c35-9f39-6f0b9b0f0c11";
    const msg = new BinaryWriter().tag(2, WireType.LengthDelimited).bytes(a).tag(1, WireType.LengthDelimited).string(id).tag(2, WireType.LengthDelimited).bytes(b).finish();
    const parsed = parseHeartbeatRequest(msg);
    expect(parsed.machineId).toBe(id);
    expect(fromBinary(AgentHardwareReportSchema, parsed.hardwareReport!.raw).warning).toEqual(["a", "b"]);
    expect(parsed.hardwareReport!.json).toEqual({ warning: ["a", "b"] });
    expect(parsed.installationReport).toBeUndefined();
    // And the generated decoder agrees.
    expect(fromBinary(HeartbeatRequestSchema, msg).hardwareReport?.warning).toEqual(["a", "b"]);
  });
});
