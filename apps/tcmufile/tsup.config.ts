import { defineConfig } from 'tsup';

export default defineConfig([
  {
    // The command: ESM only (top-level await), the package's `bin`.
    entry: ['src/cli.ts'],
    format: ['esm'],
    // The two builds run at once: this one cleans dist/ but leaves the library's files alone.
    clean: ['!index.*'],
    sourcemap: true,
    target: 'node20',
    // Optional (it needs librbd): loaded with import() only for rbd: images.
    external: ['@tcmu/rbd'],
  },
  {
    // The library (`import` and `require`), with .d.ts and .d.cts.
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    target: 'node20',
    // import.meta.url finds package.json (the version) in the CJS output too.
    shims: true,
    external: ['@tcmu/rbd'],
  },
]);
