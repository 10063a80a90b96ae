import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { keyFingerprint } from "../lib/fingerprint.js";
import { openBmdb, type Bmdb } from "./index.js";
import { testBackends, type TestDatabase } from "../test/helpers/databases.js";
import { testClock } from "../test/helpers/server.js";

// Search by prefix (ListMachines' search filter) and heartbeat ages by
// provider and location (the web view's health picture).
describe.each(testBackends())("fleet search and heartbeat ages on $name", (backend) => {
  let tdb: TestDatabase;
  let bmdb: Bmdb;
  const clock = testClock();
  const ids: Record<string, string> = {};
  const key = randomBytes(32);

  beforeAll(async () => {
    tdb = await backend.create();
    bmdb = await openBmdb(tdb.url, { clock: clock.now });
    ids.a = await bmdb.createMachine({ provider: { provider: "equinix", providerId: "da-11" } });
    ids.b = await bmdb.createMachine({ provider: { provider: "equinix", providerId: "da-12" } });
    ids.c = await bmdb.createMachine({ provider: { provider: "ovh", providerId: "gra-1" } });
    ids.d = await bmdb.createMachine();
    await bmdb.updateProvider(ids.c, { location: "gra" });
    await bmdb.registerAgent(ids.a, key);
    await bmdb.registerAgent(ids.c, randomBytes(32));
    await bmdb.heartbeat({ machineId: ids.a, publicKey: key });
  });
  afterAll(async () => {
    await bmdb?.close();
    await tdb?.drop();
  });

  const search = async (text: string) => (await bmdb.listMachines({ search: text }, 100)).machines.map((m) => m.machineId).sort();

  it("finds machines by provider ID prefix, case-sensitively", async () => {
    expect(await search("da-1")).toEqual([ids.a, ids.b].sort());
    expect(await search("gra")).toEqual([ids.c]);
    expect(await search("DA-1")).toEqual([]);
  });

  it("takes LIKE's wildcards in the search text literally", async () => {
    const lit = await bmdb.createMachine({ provider: { provider: "x", providerId: "q_1%" } });
    const other = await bmdb.createMachine({ provider: { provider: "x", providerId: "qz1" } });
    expect(await search("q_")).toEqual([lit]);
    expect(await search("q_1%")).toEqual([lit]);
    expect(await search("%")).toEqual([]);
    await bmdb.deleteMachine(lit);
    await bmdb.deleteMachine(other);
  });

  it("finds a machine by a prefix of its ID, with or without dashes, in any case", async () => {
    const id = ids.d!;
    expect(await search(id.slice(0, 13))).toContain(id);
    expect(await search(id.replace(/-/g, "").slice(0, 20).toUpperCase())).toContain(id);
    expect(await search(id)).toEqual([id]);
  });

  it("finds a machine by a prefix of its key fingerprint", async () => {
    expect(await search(keyFingerprint(key).slice(0, 16))).toEqual([ids.a]);
    expect(await search(keyFingerprint(key).slice(0, 16).toUpperCase())).toEqual([ids.a]);
  });

  it("combines search with the other filters and pages", async () => {
    expect((await bmdb.listMachines({ search: "da-1", heartbeat: "fresh" }, 100)).machines.map((m) => m.machineId)).toEqual([ids.a]);
    const first = await bmdb.listMachines({ search: "da-1" }, 1);
    expect(first.nextAfter).toBeDefined();
    const second = await bmdb.listMachines({ search: "da-1" }, 1, first.nextAfter);
    expect([...first.machines, ...second.machines].map((m) => m.machineId).sort()).toEqual([ids.a, ids.b].sort());
    expect(second.nextAfter).toBeUndefined();
  });

  it("counts machines by heartbeat age bucket per provider and location", async () => {
    const bounds = [60_000, 600_000];
    const at = async () => (await bmdb.heartbeatAges(bounds)).map((r) => `${r.provider}/${r.location}:${r.bucket}=${r.machines}`).sort();
    expect(await at()).toEqual(["/:null=1", "equinix/:0=1", "equinix/:null=1", "ovh/gra:null=1"].sort());
    clock.advance(120_000);
    expect(await at()).toContain("equinix/:1=1");
    clock.advance(600_000);
    expect(await at()).toContain("equinix/:2=1");
    await expect(bmdb.heartbeatAges([5, 1])).rejects.toThrow(/ascend/);
  });
});
