import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// bmctl must stay light (operators run it in loops): what it loads may not
// reach the database, PGlite or the server. And cmd/bmctl.ts runs the program
// on import, so nothing may import it. Both read from the sources' import
// declarations (TypeScript's own parser), type-only imports included.

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ENTRY = join(root, "cmd/bmctl.ts");

function importsOf(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, "utf8"), true, true).importedFiles.map((f) => f.fileName);
}

/** Every source file reachable from entry, and every package it names. */
function importGraph(entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const spec of importsOf(file)) {
      if (spec.startsWith(".")) visit(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
      else packages.add(spec);
    }
  };
  visit(entry);
  return { files: [...files].map((f) => relative(root, f)), packages: [...packages] };
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === "node_modules" || name === "dist" || name === "fixtures" || name.startsWith(".")) return [];
    if (lstatSync(path).isDirectory()) return sources(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

describe("bmctl's imports", () => {
  it("reach neither bmdb, the server, PGlite nor a database driver", () => {
    const { files, packages } = importGraph(ENTRY);
    expect(files).toContain("cmd/bmctl/machine.ts");
    expect(files.filter((f) => f.startsWith("bmdb/") || f.startsWith("server/"))).toEqual([]);
    expect(packages.filter((p) => /^(@electric-sql\/pglite|pg|kysely)(\/|$)/.test(p))).toEqual([]);
  });

  it("do not include the entry file from anywhere else", () => {
    const importers = sources(root).filter(
      (file) => file !== ENTRY && importsOf(file).some((spec) => spec.startsWith(".") && resolve(dirname(file), spec.replace(/\.js$/, ".ts")) === ENTRY),
    );
    expect(importers.map((f) => relative(root, f))).toEqual([]);
  });
});
