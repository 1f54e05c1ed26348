import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Model conformance and training tests do real float maths on the CPU backend.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores in CI: keep parallelism modest so heavy files don't starve each other.
    maxWorkers: 2,
    pool: 'forks',
  },
});
