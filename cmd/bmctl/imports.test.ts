import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// bmctl must stay light (operators run it in loops): what it loads may not
// reach the database, PGlite or the server, and what every command loads
// before it runs (the command tree: --help, refused arguments) may not reach
// grpc-js, the protobuf descriptors or the certificate machinery — those load
// when a command calls the server. And cmd/bmctl.ts runs the program on
// import, so nothing may import it. All read from the sources' import
// declarations (TypeScript's own parser).

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ENTRY = join(root, "cmd/bmctl.ts");

interface Imports {
  /** Loaded when the file loads: static imports and re-exports, not type-only ones. */
  eager: string[];
  /** Everything the file names: the above, import(), and type-only imports. */
  all: string[];
}

function importsOf(file: string): Imports {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const eager: string[] = [];
  const all: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const spec = node.moduleSpecifier.text;
      all.push(spec);
      const typeOnly = ts.isImportDeclaration(node) ? node.importClause?.isTypeOnly : node.isTypeOnly;
      if (!typeOnly) eager.push(spec);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      all.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { eager, all };
}

const sourceOf = (from: string, spec: string) => resolve(dirname(from), spec.replace(/\.js$/, ".ts"));

/** Every source file reachable from entry through the kind of import asked for, and every package named. */
function importGraph(entry: string, kind: keyof Imports): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const spec of importsOf(file)[kind]) {
      if (spec.startsWith(".")) visit(sourceOf(file, spec));
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
  it("reach neither bmdb, the server, PGlite, a database driver nor the certificate machinery", () => {
    const { files, packages } = importGraph(ENTRY, "all");
    expect(files).toContain("cmd/bmctl/machine-run.ts");
    expect(files.filter((f) => f.startsWith("bmdb/") || f.startsWith("server/") || f === "lib/certs.ts")).toEqual([]);
    expect(packages.filter((p) => /^(@electric-sql\/pglite|pg|kysely|@peculiar\/x509|reflect-metadata)(\/|$)/.test(p))).toEqual([]);
  });

  it("load neither grpc-js nor protobuf before a command calls the server", () => {
    const { files, packages } = importGraph(ENTRY, "eager");
    expect(files).toContain("cmd/bmctl/machine.ts");
    expect(files.filter((f) => f.startsWith("gen/") || f.endsWith("-run.ts") || f === "cmd/bmctl/operator-client.ts")).toEqual([]);
    expect(packages.filter((p) => /^@(grpc|bufbuild)\//.test(p))).toEqual([]);
  });

  it("do not include the entry file from anywhere else", () => {
    const importers = sources(root).filter((file) => file !== ENTRY && importsOf(file).all.some((spec) => spec.startsWith(".") && sourceOf(file, spec) === ENTRY));
    expect(importers.map((f) => relative(root, f))).toEqual([]);
  });
});
