import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "lib/**/*.test.ts", "server/**/*.test.ts", "bmdb/**/*.test.ts", "cmd/**/*.test.ts", "agent/**/*.test.ts"],
    // Builds dist/ when a source changed: the command tests run the built commands.
    globalSetup: ["test/global-setup.ts"],
    // PGlite takes seconds to boot (WASM + initdb) and real TLS servers start per file.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: more workers only fight over the CPU with the servers under test.
    maxWorkers: 2,
  },
});
