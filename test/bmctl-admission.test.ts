import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyFingerprint } from "../lib/fingerprint.js";
import { testBackends } from "./helpers/databases.js";
import { runCommand } from "./helpers/process.js";
import { newAgent, startTestServer, writeCertsDir } from "./helpers/server.js";

// bmctl's admission commands and bulk import as processes against a real server.

describe.each(testBackends())("bmctl admission commands on $name", (backend) => {
  let t: Awaited<ReturnType<typeof startTestServer>>;
  let dir: string;
  let certs: string;
  const bmctl = (...args: string[]) => runCommand("bmctl", ["--server", t.server.internalAddress, "--certs-dir", certs, ...args]);

  beforeAll(async () => {
    t = await startTestServer(backend);
    dir = mkdtempSync(join(tmpdir(), "bmctl-admission-"));
    certs = writeCertsDir(join(dir, "certs"), t.pki);
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists pending keys, shows them in machine get and fleet stats, accepts and rejects them", async () => {
    const { machineId } = await t.operator.createMachine({ provider: "cli", providerId: "p1" });
    const old = await newAgent(t.server.publicAddress, t.pki);
    await t.operator.registerAgent({ machineId, publicKey: old.publicKey });
    const fresh = await newAgent(t.server.publicAddress, t.pki);
    const stranger = await newAgent(t.server.publicAddress, t.pki);
    await fresh.client.heartbeat({ machineId }).catch(() => {});
    await stranger.client.heartbeat({ machineId }).catch(() => {});
    const fp = keyFingerprint(fresh.publicKey);
    const sfp = keyFingerprint(stranger.publicKey);

    const list = await bmctl("agent", "pending", "--machine", machineId);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout.split("\n")[0]).toMatch(/^MACHINE\s+KEY\s+STATE\s+ATTEMPTS\s+FIRST SEEN\s+LAST SEEN\s+REPLACES\s+HARDWARE\s+PROVIDER$/);
    expect(list.stdout).toMatch(new RegExp(`${machineId}\\s+${fp.slice(0, 16)}\\s+pending\\s+1\\s+\\d+s ago\\s+\\d+s ago\\s+${keyFingerprint(old.publicKey).slice(0, 16)}\\s+no report\\s+cli/p1`));
    const json = JSON.parse((await bmctl("agent", "pending", "--rekeyed", "--all", "--json")).stdout) as { keyFingerprint: string }[];
    expect(json.map((r) => r.keyFingerprint).sort()).toEqual([fp, sfp].sort());

    const get = await bmctl("machine", "get", machineId);
    expect(get.stdout).toMatch(/agent key\s+sha256:[0-9a-f]{64} preauthorized by CN=operator/);
    expect(get.stdout).toContain(`pending key  sha256:${fp} pending since`);
    expect(get.stdout).toContain(`bmctl agent accept ${machineId} ${fp.slice(0, 16)}`);
    const stats = await bmctl("fleet", "stats");
    expect(stats.stdout).toMatch(/agents pending admission: 2 \(re-keyed machines: 2\); rejected keys: 0/);

    const bad = await bmctl("agent", "accept", machineId, "xyz");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^error: command-argument value 'xyz' is invalid for argument 'fingerprint'. want a key fingerprint: 8 to 64 hex digits/);
    const missing = await bmctl("agent", "accept", machineId, "00000000");
    expect(missing.stderr).toMatch(/^bmctl: machine \S+ has no pending or rejected key with fingerprint 00000000\n$/);

    const rejected = await bmctl("agent", "reject", machineId, `sha256:${sfp.slice(0, 12)}`, "--reason", "not ours");
    expect(rejected.stdout).toBe(`rejected key sha256:${sfp} for ${machineId}\n`);
    const accepted = await bmctl("agent", "accept", machineId, fp.slice(0, 12));
    expect(accepted.stdout).toBe(`accepted key sha256:${fp} for ${machineId}; replaces sha256:${keyFingerprint(old.publicKey)}, now refused; hardware: no report sent\n`);
    await fresh.client.heartbeat({ machineId });
    const after = await bmctl("agent", "pending", "--rejected", "--machine", machineId, "--json");
    expect((JSON.parse(after.stdout) as { keyFingerprint: string }[]).map((r) => r.keyFingerprint).sort()).toEqual([sfp, keyFingerprint(old.publicKey)].sort());
    [old, fresh, stranger].forEach((a) => a.client.close());
  });

  it("imports a file: a bad line imports nothing and is reported; a good file twice is idempotent; conflicts are reported", async () => {
    const key = Buffer.from((await newAgent(t.server.publicAddress, t.pki)).publicKey).toString("hex");
    const lines = ["provider,provider_id,public_key", "imp,a," + key, "imp,b", "# a comment", "", "imp,c"];
    const badFile = join(dir, "bad.csv");
    writeFileSync(badFile, [...lines, "imp,d,notakey", "imp,a", "only-one-field"].join("\n"));
    const bad = await bmctl("machine", "import", badFile);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toBe(
      `${badFile}:7: public_key must be 64 hex digits or base64 of 32 bytes\n${badFile}:8: same provider and provider_id as line 2\n${badFile}:9: want 2 or 3 fields (provider,provider_id[,public_key]), got 1\nbmctl: nothing imported: 3 bad line(s) in ${badFile}\n`,
    );
    expect((await t.operator.listMachines({ provider: "imp" })).machines).toEqual([]);

    const good = join(dir, "good.csv");
    writeFileSync(good, lines.join("\n"));
    const first = await bmctl("machine", "import", good);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^3 machines in \d+\.\ds: 3 created, 0 key set, 0 unchanged, 0 key conflict\(s\)\n$/);
    const second = await bmctl("machine", "import", good);
    expect(second.stdout).toMatch(/: 0 created, 0 key set, 3 unchanged, 0 key conflict\(s\)\n$/);
    expect((await t.operator.listMachines({ provider: "imp" })).machines).toHaveLength(3);

    const jsonl = join(dir, "more.jsonl");
    const other = Buffer.from((await newAgent(t.server.publicAddress, t.pki)).publicKey).toString("base64");
    writeFileSync(jsonl, [`{"provider":"imp","provider_id":"a","public_key":"${other}"}`, `{"provider":"imp","provider_id":"b","public_key":"${key}"}`].join("\n"));
    const conflict = await bmctl("machine", "import", jsonl);
    expect(conflict.code).toBe(1);
    expect(conflict.stdout).toMatch(/: 0 created, 1 key set, 0 unchanged, 1 key conflict\(s\)\n$/);
    expect(conflict.stderr).toMatch(new RegExp(`^${jsonl.replace(/[.]/g, "\\.")}:1: imp/a: machine \\S+ has a different key; left alone`));
  });
});
