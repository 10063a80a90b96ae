import { ed25519KeyProblem } from "../../lib/ed25519-key.js";
import { parsePublicKey } from "./args.js";

// The file `bmctl machine import` reads: CSV or JSON lines, one machine each.
//   CSV:        provider,provider_id[,public_key]   (a header line naming these columns is skipped)
//   JSON lines: {"provider": "…", "provider_id": "…", "public_key": "…"}  (public_key optional)
// Blank lines and lines starting with # are skipped. public_key: the raw
// 32-byte Ed25519 key as 64 hex digits or base64. Every line is checked
// before anything is sent; one bad line means nothing is imported.

export interface ImportLine {
  /** 1-based line number in the file. */
  line: number;
  provider: string;
  providerId: string;
  publicKey?: Uint8Array;
}

export interface LineProblem {
  line: number;
  problem: string;
}

export type ImportFormat = "csv" | "jsonl";

const MAX_CHARS = 256;

/** csv or jsonl from the file name, else from the first line that is not blank or a comment. */
export function detectFormat(name: string, text: string): ImportFormat {
  if (/\.(jsonl|ndjson|json)$/i.test(name)) return "jsonl";
  if (/\.csv$/i.test(name)) return "csv";
  const first = text.split("\n").find((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  return first?.trim().startsWith("{") ? "jsonl" : "csv";
}

function parseKey(text: string): Uint8Array | string {
  let bytes: Uint8Array;
  try {
    bytes = parsePublicKey(text);
  } catch {
    return "public_key must be 64 hex digits or base64 of 32 bytes";
  }
  return ed25519KeyProblem(bytes, { torsionCheck: false }) ?? new Uint8Array(bytes);
}

function checkText(what: string, v: unknown): string | undefined {
  if (typeof v !== "string" || v === "") return `${what} is missing`;
  if (v.length > MAX_CHARS) return `${what} is longer than ${MAX_CHARS} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(v)) return `${what} contains control characters`;
  return undefined;
}

/** Minimal CSV fields: commas separate, double quotes quote ("" is a quote). */
function csvFields(line: string): string[] | undefined {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = "";
    if (line[i] === '"') {
      i++;
      for (;;) {
        if (i >= line.length) return undefined;
        if (line[i] === '"') {
          if (line[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += line[i++];
      }
      if (i < line.length && line[i] !== ",") return undefined;
    } else {
      const end = line.indexOf(",", i);
      field = line.slice(i, end < 0 ? line.length : end);
      i = end < 0 ? line.length : end;
    }
    fields.push(field.trim());
    if (i >= line.length) return fields;
    i++; // the comma
  }
}

function fromCsv(line: string): Record<string, unknown> | string {
  const f = csvFields(line);
  if (!f) return "malformed CSV (unbalanced quotes)";
  if (f.length < 2 || f.length > 3) return `want 2 or 3 fields (provider,provider_id[,public_key]), got ${f.length}`;
  return { provider: f[0], provider_id: f[1], ...(f[2] && { public_key: f[2] }) };
}

function fromJson(line: string): Record<string, unknown> | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return "not a JSON object";
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) return "not a JSON object";
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !["provider", "provider_id", "providerId", "public_key", "publicKey"].includes(k));
  if (unknown.length) return `unknown field(s) ${unknown.join(", ")}`;
  return { provider: o.provider, provider_id: o.provider_id ?? o.providerId, public_key: o.public_key ?? o.publicKey };
}

/** Every line of the file, checked; lines holds the good ones, problems the rest. */
export function parseImportFile(text: string, format: ImportFormat): { lines: ImportLine[]; problems: LineProblem[] } {
  const lines: ImportLine[] = [];
  const problems: LineProblem[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const n = i + 1;
    const t = raw.trim();
    if (t === "" || t.startsWith("#")) return;
    if (format === "csv" && lines.length === 0 && problems.length === 0 && /^provider\s*,\s*provider_id\b/i.test(t)) return;
    const record = format === "csv" ? fromCsv(t) : fromJson(t);
    if (typeof record === "string") return void problems.push({ line: n, problem: record });
    const problem = checkText("provider", record.provider) ?? checkText("provider_id", record.provider_id);
    if (problem) return void problems.push({ line: n, problem });
    const entry: ImportLine = { line: n, provider: record.provider as string, providerId: record.provider_id as string };
    if (record.public_key !== undefined && record.public_key !== null && record.public_key !== "") {
      if (typeof record.public_key !== "string") return void problems.push({ line: n, problem: "public_key must be a string" });
      const key = parseKey(record.public_key);
      if (typeof key === "string") return void problems.push({ line: n, problem: key });
      entry.publicKey = key;
    }
    const id = JSON.stringify([entry.provider, entry.providerId]);
    const first = seen.get(id);
    if (first !== undefined) return void problems.push({ line: n, problem: `same provider and provider_id as line ${first}` });
    seen.set(id, n);
    lines.push(entry);
  });
  return { lines, problems };
}
