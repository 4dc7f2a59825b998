import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the
// "@tcmu/source" export condition, so tests need no build step.
const resolve = { conditions: ['@tcmu/source', 'import', 'module', 'node', 'default'] };

export default defineConfig({
  resolve,
  ssr: { resolve: { conditions: resolve.conditions, externalConditions: ['@tcmu/source'] } },
  test: {
    coverage: {
      provider: 'v8',
      include: ['packages/*/src/**/*.ts'],
      exclude: ['**/*.test.ts', '**/*.bench.ts', '**/testing/**', '**/*.d.ts'],
      reporter: ['text-summary', 'json-summary'],
      // issue 2: the SCSI layer keeps at least 95% line coverage.
      thresholds: { 'packages/scsi/src/**/*.ts': { lines: 95 } },
    },
    projects: [
      {
        resolve,
        ssr: { resolve: { conditions: resolve.conditions, externalConditions: ['@tcmu/source'] } },
        test: {
          name: 'unit',
          include: [
            'packages/*/src/**/*.test.ts',
            'apps/*/src/**/*.test.ts',
            'tools/**/*.test.ts',
            'tests/**/*.test.ts',
            'examples/*.test.ts',
          ],
          exclude: ['**/*.kernel.test.ts', '**/node_modules/**'],
          testTimeout: 20_000,
        },
      },
      {
        resolve,
        ssr: { resolve: { conditions: resolve.conditions, externalConditions: ['@tcmu/source'] } },
        test: {
          name: 'kernel',
          include: [
            'packages/*/src/**/*.kernel.test.ts',
            'apps/*/src/**/*.kernel.test.ts',
            'tests/**/*.kernel.test.ts',
            'examples/*.kernel.test.ts',
          ],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
