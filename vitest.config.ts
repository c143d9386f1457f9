import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests share one PostgreSQL server; each file gets its own database.
    fileParallelism: true,
    maxWorkers: 2,
    allowOnly: false,
    reporters: ["default", "./test/support/summary-reporter.ts"],
  },
});
