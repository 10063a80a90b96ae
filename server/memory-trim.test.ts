import pino from "pino";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { trimMemory } from "./memory-trim.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const MiB = 1048576;

describe("trimMemory", () => {
  it("gives memory freed in the middle of the heap back to the OS", async () => {
    const logger = pino({ level: "silent" });
    // 200 MiB in 64 KiB blocks (malloc'd, below the mmap threshold), each
    // followed by a small block that stays: freeing the large ones leaves
    // holes that glibc's own trimming (the top of the heap only) cannot return.
    let large: Buffer[] = [];
    const kept: Buffer[] = [];
    for (let i = 0; i < 3200; i++) {
      large.push(Buffer.allocUnsafeSlow(64 * 1024).fill(1));
      kept.push(Buffer.allocUnsafeSlow(512).fill(2));
    }
    large = [];
    // V8 frees ArrayBuffer memory on a background thread after a GC: give it
    // a moment, or the trim may run before there is anything to give back.
    gc();
    await new Promise((r) => setTimeout(r, 200));
    gc();
    await new Promise((r) => setTimeout(r, 200));
    const r = trimMemory(logger);
    expect(r, "the memory_trim addon is built on this glibc machine").toBeDefined();
    expect(r!.released).toBe(true);
    const freed = (r!.rssBefore - r!.rssAfter) / MiB;
    expect(freed).toBeGreaterThan(100);
    console.log(`trim: ${freed.toFixed(0)} MiB given back in ${r!.ms.toFixed(1)} ms`);
    expect(r!.ms).toBeLessThan(1000);
    // With nothing left to give back, a trim only walks the free lists.
    const again = trimMemory(logger)!;
    console.log(`trim again: ${again.ms.toFixed(2)} ms`);
    expect(again.ms).toBeLessThan(r!.ms);
    expect(kept.every((b) => b[0] === 2)).toBe(true);
  });
});
