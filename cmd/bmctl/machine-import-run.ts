import { readNamedFile } from "../../lib/read-file.js";
import { ImportOutcome } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { oneLine } from "../private/fail.js";
import { print, type CommandContext } from "./context.js";
import { detectFormat, parseImportFile, type ImportFormat, type ImportLine } from "./import-file.js";

// What bmctl machine import does once it runs (loaded then): check every
// line, then ImportMachines in batches (one transaction each), a few in
// flight at once.

const IMPORT_DEADLINE_MS = 120_000;
/** Problems shown before "… and N more". */
const SHOWN_PROBLEMS = 50;

export interface ImportOptions {
  format?: ImportFormat;
  batchSize: number;
  parallel: number;
}

/** A progress bar on stderr, redrawn at most 10 times a second; nothing when stderr is not a terminal. */
function progress(total: number): { update: (done: number) => void; end: () => void } {
  if (!process.stderr.isTTY) return { update: () => {}, end: () => {} };
  const started = Date.now();
  let drawn = 0;
  const draw = (done: number) => {
    const width = 30;
    const filled = Math.round((done / Math.max(1, total)) * width);
    const rate = done / Math.max(0.001, (Date.now() - started) / 1000);
    process.stderr.write(`\rimporting [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} (${Math.floor((done / Math.max(1, total)) * 100)}%) ${Math.round(rate)}/s `);
  };
  return {
    update(done) {
      if (Date.now() - drawn < 100 && done < total) return;
      drawn = Date.now();
      draw(done);
    },
    end() {
      process.stderr.write("\n");
    },
  };
}

export async function importFile(ctx: CommandContext, file: string, o: ImportOptions): Promise<void> {
  const text = readNamedFile("import file", file).toString("utf8");
  const { lines, problems } = parseImportFile(text, o.format ?? detectFormat(file, text));
  if (problems.length > 0) {
    for (const p of problems.slice(0, SHOWN_PROBLEMS)) process.stderr.write(`${file}:${p.line}: ${oneLine(p.problem, 300)}\n`);
    if (problems.length > SHOWN_PROBLEMS) process.stderr.write(`… and ${problems.length - SHOWN_PROBLEMS} more\n`);
    throw new Error(`nothing imported: ${problems.length} bad line(s) in ${file}`);
  }
  if (lines.length === 0) throw new Error(`nothing to import: ${file} has no machines`);

  const batches: ImportLine[][] = [];
  for (let i = 0; i < lines.length; i += o.batchSize) batches.push(lines.slice(i, i + o.batchSize));
  const counts = new Map<ImportOutcome, number>();
  const conflicts: string[] = [];
  let done = 0;
  const bar = progress(lines.length);
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const batch = batches[next++]!;
      const r = await (await ctx.operator()).importMachines(
        { entries: batch.map((l) => ({ provider: l.provider, providerId: l.providerId, ...(l.publicKey && { publicKey: l.publicKey }) })) },
        { deadline: Date.now() + IMPORT_DEADLINE_MS },
      );
      r.results.forEach((res, i) => {
        counts.set(res.outcome, (counts.get(res.outcome) ?? 0) + 1);
        const l = batch[i]!;
        if (res.outcome === ImportOutcome.KEY_CONFLICT) {
          conflicts.push(`${file}:${l.line}: ${l.provider}/${l.providerId}: machine ${res.machineId} has a different key; left alone (bmctl agent register replaces it)`);
        }
      });
      done += batch.length;
      bar.update(done);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(o.parallel, batches.length) }, worker));
  } catch (e) {
    bar.end();
    process.stderr.write(`stopped after ${done} of ${lines.length} machines; running the import again is safe (it is idempotent)\n`);
    throw e;
  }
  bar.end();
  const n = (k: ImportOutcome) => counts.get(k) ?? 0;
  const seconds = (Date.now() - started) / 1000;
  print(
    `${lines.length} machines in ${seconds.toFixed(1)}s: ${n(ImportOutcome.CREATED)} created, ${n(ImportOutcome.KEY_SET)} key set, ${n(ImportOutcome.UNCHANGED)} unchanged, ${n(ImportOutcome.KEY_CONFLICT)} key conflict(s)`,
  );
  for (const c of conflicts.slice(0, SHOWN_PROBLEMS)) process.stderr.write(c + "\n");
  if (conflicts.length > SHOWN_PROBLEMS) process.stderr.write(`… and ${conflicts.length - SHOWN_PROBLEMS} more\n`);
  if (conflicts.length > 0) process.exitCode = 1;
}
