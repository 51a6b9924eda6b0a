import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: two files at a time keeps races real without starving the database.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    // The JSON report feeds the one-line summary CI prints ("Tests: N passed, N failed").
    reporters: ['default', 'json'],
    outputFile: { json: 'coverage/test-results.json' },
    coverage: {
      provider: 'v8',
      reporter: ['text-summary', 'json-summary', 'html'],
      include: ['src/**/*.ts'],
      // The report is written even when a test fails, so a red run still shows where coverage stands.
      reportOnFailure: true,
      // SPEC §16: 100 % line and branch coverage for the idempotency and inbound-webhook modules.
      thresholds: {
        'src/idempotency/**': { lines: 100, branches: 100, functions: 100, statements: 100 },
        'src/http/idempotency.ts': { lines: 100, branches: 100, functions: 100, statements: 100 },
        'src/inbound/**': { lines: 100, branches: 100, functions: 100, statements: 100 },
        'src/http/routes/provider-webhooks.ts': { lines: 100, branches: 100, functions: 100, statements: 100 },
      },
    },
  },
});
