import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Runs tests/kernel/ring*.kernel.test.ts (inside the VM) until the root
// config's `kernel` project includes tests/**/*.kernel.test.ts:
//   /work/shared/vm/tcmu-vm -- npx vitest run --config packages/ring/vitest.kernel.config.ts
const conditions = ['@tcmu/source', 'import', 'module', 'node', 'default'];

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['@tcmu/source'] } },
  test: {
    name: 'ring-kernel',
    include: ['tests/kernel/ring*.kernel.test.ts', 'packages/ring/src/**/*.kernel.test.ts'],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
