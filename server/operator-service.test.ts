import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyFingerprint } from "../lib/fingerprint.js";
import { testBackends } from "../test/helpers/databases.js";
import { codeOf, errorOf, newAgent, operatorClient, startTestServer } from "../test/helpers/server.js";
import { createDevPki, generateAgentKey, rawEd25519PublicKey } from "../lib/certs.js";

describe.each(testBackends())("OperatorService on $name", (backend) => {
  let t: Awaited<ReturnType<typeof startTestServer>>;

  beforeAll(async () => {
    t = await startTestServer(backend);
  });
  afterAll(async () => t?.stop());

  it("answers INVALID_ARGUMENT, not INTERNAL, to a malformed request or invalid UTF-8", async () => {
    const call = (body: Buffer) =>
      new Promise<grpc.ServiceError | null>((resolve) =>
        t.operator.grpc.makeUnaryRequest(
          "/bmaas.operator.v1.OperatorService/GetMachine",
          (b: Buffer) => b,
          (b: Buffer) => b,
          body,
          (err) => resolve(err),
        ),
      );
    expect((await call(Buffer.of(0x0a, 0xff, 0xff)))?.code).toBe(grpc.status.INVALID_ARGUMENT);
    // field 1 (machine_id) as a string of invalid UTF-8
    expect((await call(Buffer.of(0x0a, 0x02, 0xc3, 0x28)))?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("answers INVALID_ARGUMENT to a forged history page token with a date the database cannot hold", async () => {
    const { machineId } = await t.operator.createMachine({});
    const forged = Buffer.from(JSON.stringify({ t: "-200000-01-01T00:00:00.000Z", e: "0190d1c8-0000-7000-8000-000000000000" })).toString("base64url");
    expect(await codeOf(t.operator.getMachineHistory({ machineId, pageToken: forged }))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("creates machines with and without a provider, refusing a duplicate provider id", async () => {
    const bare = await t.operator.createMachine({});
    expect(bare.machineId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const { machineId } = await t.operator.createMachine({ provider: "equinix", providerId: "da-1" });
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.provided).toMatchObject({ provider: "equinix", providerId: "da-1" });
    expect(m.createdAt).toBeDefined();

    const dup = await errorOf(t.operator.createMachine({ provider: "equinix", providerId: "da-1" }));
    expect(dup.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(await codeOf(t.operator.createMachine({ provider: "equinix" }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(t.operator.createMachine({ providerId: "x" }))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("registers agent keys, validating the key and the machine", async () => {
    const { machineId } = await t.operator.createMachine({});
    const pub = rawEd25519PublicKey(generateAgentKey());
    const r = await t.operator.registerAgent({ machineId, publicKey: pub });
    expect(r.keyFingerprint).toBe(keyFingerprint(pub));
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(Buffer.from(m.agentStarted!.publicKey).equals(Buffer.from(pub))).toBe(true);
    expect(m.agentStarted!.keyFingerprint).toBe(r.keyFingerprint);

    expect(await codeOf(t.operator.registerAgent({ machineId, publicKey: pub.subarray(0, 31) }))).toBe(grpc.status.INVALID_ARGUMENT);
    // 32 bytes that are not a point on the curve.
    const notAPoint = Buffer.alloc(32, 0xff);
    expect(await codeOf(t.operator.registerAgent({ machineId, publicKey: notAPoint }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(t.operator.registerAgent({ machineId: "nope", publicKey: pub }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(t.operator.registerAgent({ machineId: "0b6f1d3e-0000-4000-8000-000000000000", publicKey: pub }))).toBe(
      grpc.status.NOT_FOUND,
    );
  });

  it("answers NOT_FOUND and INVALID_ARGUMENT for GetMachine as a user would expect", async () => {
    expect(await codeOf(t.operator.getMachine({ machineId: "0b6f1d3e-0000-4000-8000-000000000000" }))).toBe(grpc.status.NOT_FOUND);
    expect(await codeOf(t.operator.getMachine({ machineId: "" }))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("shows the heartbeat with its age", async () => {
    const { machineId } = await t.operator.createMachine({});
    const agent = await newAgent(t.server.publicAddress, t.pki);
    await t.operator.registerAgent({ machineId, publicKey: agent.publicKey });
    await agent.client.heartbeat({ machineId });
    agent.client.close();
    const hb = (await t.operator.getMachine({ machineId })).machine!.agentHeartbeat!;
    expect(hb.lastHeartbeatAt).toBeDefined();
    expect(Number(hb.age!.seconds)).toBeLessThan(60);
  });

  it("validates installation requests and refuses unknown machines", async () => {
    const { machineId } = await t.operator.createMachine({});
    expect(await codeOf(t.operator.setInstallationRequest({ machineId, generation: 0n, rootDevice: "/dev/sda" }))).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
    expect(await codeOf(t.operator.setInstallationRequest({ machineId, generation: 1n, rootDevice: "" }))).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
    expect(
      await codeOf(t.operator.setInstallationRequest({ machineId: "0b6f1d3e-0000-4000-8000-000000000000", generation: 1n, rootDevice: "/dev/sda" })),
    ).toBe(grpc.status.NOT_FOUND);
    await t.operator.setInstallationRequest({ machineId, generation: 7n, rootDevice: "/dev/sda", osImage: { host: "r.example", repository: "os" } });
    const m = (await t.operator.getMachine({ machineId })).machine!;
    expect(m.installationRequest?.generation).toBe(7n);
    expect(m.installationRequest?.request?.type.value?.rootDevice).toBe("/dev/sda");
    expect(m.installationPending).toBe(true);
  });

  describe("mTLS", () => {
    it("refuses a client without a certificate at the handshake", async () => {
      const { createClient } = await import("../lib/grpc-adapter.js");
      const { OperatorService } = await import("../gen/bmaas/operator/v1/operator_pb.js");
      const c = createClient(OperatorService, t.server.internalAddress, grpc.credentials.createSsl(Buffer.from(t.pki.ca.cert)), {
        "grpc.use_local_subchannel_pool": 1,
      });
      const err = await errorOf(c.createMachine({}, { deadline: Date.now() + 5000 }));
      c.close();
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
    });

    it("refuses a client certificate from a foreign CA", async () => {
      const foreign = await createDevPki();
      // Trusts our server, but presents an operator certificate of another CA.
      const c = operatorClient(t.server.internalAddress, { ...t.pki, operator: foreign.operator });
      const err = await errorOf(c.createMachine({}, { deadline: Date.now() + 5000 }));
      c.close();
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
    });

    it("does not serve operator RPCs on the agent listener", async () => {
      const c = operatorClient(t.server.publicAddress, t.pki);
      expect(await codeOf(c.createMachine({}))).toBe(grpc.status.UNIMPLEMENTED);
      c.close();
    });
  });

  it("serves grpc.health.v1 and reflection on the internal listener", async () => {
    const creds = grpc.credentials.createSsl(Buffer.from(t.pki.ca.cert), Buffer.from(t.pki.operator.key), Buffer.from(t.pki.operator.cert));
    const client = new grpc.Client(t.server.internalAddress, creds);
    // grpc.health.v1.HealthCheckRequest{service: ""} is empty; SERVING = field 1 varint 1.
    const health = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (err, res) => (err ? reject(err) : resolve(res!)),
      ),
    );
    expect([...health]).toEqual([0x08, 0x01]);

    // One ServerReflectionRequest per call, its answer as latin1 text.
    const reflect = async (request: Buffer): Promise<string> => {
      const call = client.makeBidiStreamRequest("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", (b: Buffer) => b, (b: Buffer) => b);
      const reply = new Promise<Buffer>((resolve, reject) => {
        call.on("data", (b: Buffer) => resolve(b));
        call.on("error", reject);
      });
      call.write(request);
      const text = (await reply).toString("latin1");
      call.end();
      return text;
    };
    const stringField = (field: number, text: string) => Buffer.concat([Buffer.from([(field << 3) | 2, text.length]), Buffer.from(text)]);

    // list_services (field 7) → names of services.
    const services = await reflect(stringField(7, ""));
    expect(services).toContain("bmaas.operator.v1.OperatorService");
    expect(services).toContain("grpc.health.v1.Health");
    // The agent API is not served here, so it is not advertised here.
    expect(services).not.toContain("AgentCallback");
    // file_containing_symbol (field 4) → each service's file descriptor, with its imports.
    const operatorFiles = await reflect(stringField(4, "bmaas.operator.v1.OperatorService"));
    expect(operatorFiles).toContain("bmaas/operator/v1/operator.proto");
    expect(operatorFiles).toContain("google/protobuf/timestamp.proto");
    expect(await reflect(stringField(4, "grpc.health.v1.Health"))).toContain("HealthCheckResponse");
    client.close();
  });
});
