import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { detectFormat, parseImportFile } from "./import-file.js";

const key = () => Buffer.from(generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }).x!, "base64url");

describe("import files", () => {
  it("reads CSV with an optional header, quotes, comments, keys as hex or base64", () => {
    const k1 = key();
    const k2 = key();
    const text = `provider,provider_id,public_key\n# comment\n\nacme,"a,1",${k1.toString("hex")}\nacme, b ,${k2.toString("base64")}\nacme,c\n`;
    const { lines, problems } = parseImportFile(text, "csv");
    expect(problems).toEqual([]);
    expect(lines.map((l) => [l.line, l.provider, l.providerId, l.publicKey && Buffer.from(l.publicKey).toString("hex")])).toEqual([
      [4, "acme", "a,1", k1.toString("hex")],
      [5, "acme", "b", k2.toString("hex")],
      [6, "acme", "c", undefined],
    ]);
  });

  it("reports every bad line with its number and reason", () => {
    const text = [
      `{"provider":"p","provider_id":"1"}`,
      `{"provider":"p","provider_id":"1"}`,
      `{"provider":"p"}`,
      `{"provider":"p","provider_id":"2","public_key":"${"00".repeat(32)}"}`,
      `{"provider":"p","provider_id":"3","color":"red"}`,
      `[1,2]`,
      `{"provider":"p","provider_id":"4\\u0000"}`,
    ].join("\n");
    expect(parseImportFile(text, "jsonl").problems).toEqual([
      { line: 2, problem: "same provider and provider_id as line 1" },
      { line: 3, problem: "provider_id is missing" },
      { line: 4, problem: "public_key is not a valid Ed25519 public key (small order)" },
      { line: 5, problem: "unknown field(s) color" },
      { line: 6, problem: "not a JSON object" },
      { line: 7, problem: "provider_id contains control characters" },
    ]);
  });

  it("tells the format from the name, else from the first line", () => {
    expect(detectFormat("m.jsonl", "a,b")).toBe("jsonl");
    expect(detectFormat("m.csv", "{}")).toBe("csv");
    expect(detectFormat("machines", "# x\n{\"provider\":\"p\"}")).toBe("jsonl");
    expect(detectFormat("machines", "p,1")).toBe("csv");
  });
});
