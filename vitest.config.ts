import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Tests sit beside their code (foo.ts + foo.test.ts) wherever it is, and
    // the cross-cutting ones in test/; node_modules and dist/ stay excluded
    // (vitest's default exclude).
    include: ["**/*.test.ts"],
    // Builds dist/ when a source changed: the command tests run the built commands.
    globalSetup: ["test/global-setup.ts"],
    // PGlite takes seconds to boot (WASM + initdb) and real TLS servers start per file.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: more workers only fight over the CPU with the servers under test.
    maxWorkers: 2,
  },
});
