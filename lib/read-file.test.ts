import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readNamedFile } from "./read-file.js";

describe("readNamedFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "read-file-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("returns the file's bytes", () => {
    writeFileSync(join(dir, "ca.pem"), "PEM\n");
    expect(readNamedFile("--ca", join(dir, "ca.pem")).toString()).toBe("PEM\n");
  });

  it("says 'no such file' in one line naming the label and the file", () => {
    const missing = join(dir, "missing.pem");
    expect(() => readNamedFile("--ca", missing)).toThrow(new Error(`--ca ${missing}: no such file`));
  });

  it("gives Node's reason for any other failure", () => {
    expect(() => readNamedFile("--ca", dir)).toThrow(new RegExp(`^--ca ${dir}: EISDIR`));
  });
});
