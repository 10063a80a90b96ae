import { ScalarType, type DescMessage } from "@bufbuild/protobuf";

// Text the agent sends comes from places it does not control: sysfs, procfs
// and SMBIOS strings written by firmware and drivers, an installer's stderr.
// They may hold NUL bytes, control characters or bytes that are not UTF-8,
// and may be huge. The server refuses NUL, invalid UTF-8 and oversized fields
// with INVALID_ARGUMENT, and an agent whose every heartbeat is refused looks
// dead, so nothing of the kind may leave the agent.

/** Longest string field of a hardware report, in characters (code points). */
export const MAX_FIELD_CHARS = 256;
/** Most entries of a repeated field of a hardware report (disks, NICs, CPUs…). */
export const MAX_LIST_ENTRIES = 256;
/** Most warnings in a report, and the longest one, in characters. */
export const MAX_WARNINGS = 64;
export const MAX_WARNING_CHARS = 512;
/** Longest installer error message in an installation report, in characters. */
export const MAX_INSTALL_ERROR_CHARS = 4096;
/** Longest bytes field of a hardware report (MACs are 6–20 bytes, WWNs 8–16). */
export const MAX_BYTES_FIELD = 64;

const decoder = new TextDecoder("utf-8", { fatal: false });
// Whitespace controls become a space (so "a\tb" stays two words); every other
// C0 control character, NUL included, and DEL is dropped.
const WHITESPACE_CONTROLS = /[\t\n\v\f\r]/g;
const OTHER_CONTROLS = /[\x00-\x08\x0e-\x1f\x7f]/g;
// UTF-16 halves without their other half cannot be encoded as UTF-8.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * text as a string that is safe to send: invalid UTF-8 (in bytes) or
 * unpaired surrogates (in a string) become U+FFFD, control characters are
 * dropped (whitespace ones become a space), blanks are trimmed, and at most
 * maxChars code points are kept.
 */
export function cleanText(text: string | Uint8Array, maxChars: number = MAX_FIELD_CHARS): string {
  let s = typeof text === "string" ? text : decoder.decode(text);
  // Work on a bounded prefix: a megabyte of junk costs no more than a page.
  // Each kept code point is at most 2 UTF-16 units; controls dropped on the
  // way may shorten it, so keep a generous margin.
  const bound = maxChars * 8 + 64;
  if (s.length > bound) s = s.slice(0, bound);
  s = s.replace(LONE_SURROGATE, "\ufffd").replace(WHITESPACE_CONTROLS, " ").replace(OTHER_CONTROLS, "").trim();
  if (s.length > maxChars) {
    // Count code points, not UTF-16 units, and never split a pair.
    const points = Array.from(s);
    if (points.length > maxChars) s = points.slice(0, maxChars).join("").trimEnd();
  }
  return s;
}

/** warnings cleaned, each at most MAX_WARNING_CHARS, at most MAX_WARNINGS; the last says how many were left out. */
export function cleanWarnings(warnings: readonly string[]): string[] {
  const out = warnings.map((w) => cleanText(w, MAX_WARNING_CHARS)).filter((w) => w !== "");
  if (out.length <= MAX_WARNINGS) return out;
  const kept = out.slice(0, MAX_WARNINGS - 1);
  kept.push(`warnings: ${out.length - kept.length} more not reported (at most ${MAX_WARNINGS})`);
  return kept;
}

/**
 * Cleans every string of msg (a message of type desc, nested messages and
 * lists included) in place with cleanText, cuts every list to
 * MAX_LIST_ENTRIES and clears bytes fields longer than MAX_BYTES_FIELD; what
 * was cut is passed to warn. Driven by the schema, so a field added later is
 * covered without anyone remembering to.
 */
export function cleanMessage(desc: DescMessage, msg: object, warn: (message: string) => void, path = ""): void {
  const m = msg as Record<string, unknown>;
  for (const f of desc.fields) {
    let holder = m;
    let key = f.localName;
    if (f.oneof) {
      const o = m[f.oneof.localName] as { case?: string; value?: unknown } | undefined;
      if (!o || o.case !== f.localName) continue;
      holder = o as Record<string, unknown>;
      key = "value";
    }
    const value = holder[key];
    const where = path ? `${path}.${f.name}` : f.name;
    switch (f.fieldKind) {
      case "scalar":
        if (f.scalar === ScalarType.STRING && typeof value === "string") holder[key] = cleanText(value);
        if (f.scalar === ScalarType.BYTES && value instanceof Uint8Array && value.length > MAX_BYTES_FIELD) {
          holder[key] = new Uint8Array(0);
          warn(`${where}: ${value.length} bytes is too long, left out`);
        }
        break;
      case "message":
        if (value && typeof value === "object") cleanMessage(f.message, value, warn, where);
        break;
      case "list": {
        let list = value as unknown[] | undefined;
        if (!Array.isArray(list)) break;
        if (list.length > MAX_LIST_ENTRIES) {
          warn(`${where}: ${list.length} entries found, only the first ${MAX_LIST_ENTRIES} reported`);
          list = list.slice(0, MAX_LIST_ENTRIES);
          holder[key] = list;
        }
        if (f.listKind === "scalar" && f.scalar === ScalarType.STRING) holder[key] = list.map((s) => cleanText(String(s)));
        if (f.listKind === "message") list.forEach((e, i) => cleanMessage(f.message, e as object, warn, `${where}[${i}]`));
        break;
      }
      case "map": {
        const map = value as Record<string, unknown> | undefined;
        if (!map) break;
        const keys = Object.keys(map);
        if (keys.length > MAX_LIST_ENTRIES) {
          warn(`${where}: ${keys.length} entries found, only ${MAX_LIST_ENTRIES} reported`);
          for (const k of keys.slice(MAX_LIST_ENTRIES)) delete map[k];
        }
        for (const k of Object.keys(map)) {
          const ck = f.mapKey === ScalarType.STRING ? cleanText(k) : k;
          let v = map[k];
          if (f.mapKind === "scalar" && f.scalar === ScalarType.STRING) v = cleanText(String(v));
          if (f.mapKind === "message") cleanMessage(f.message, v as object, warn, `${where}[${ck}]`);
          if (ck !== k) delete map[k];
          map[ck] = v;
        }
        break;
      }
      case "enum":
        break;
    }
  }
}
