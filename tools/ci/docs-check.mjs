#!/usr/bin/env node
// The API reference (docs/install.md, "CI"):
//   - every export of every publishable package is a typedoc entry point of it (a new subpath
//     cannot go undocumented);
//   - `pnpm run docs` (typedoc over the workspace, warnings are errors) exits 0 with 0 warnings and
//     0 errors, and writes docs/api/index.html.
// Each check prints `ok - ...` or `not ok - ...`; the last line is `docs-check: N passed, N failed`.
//
//   node tools/ci/docs-check.mjs
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createChecks, publishablePackages, repo, run } from './lib.mjs';

const { check, finish } = createChecks('docs-check');
const esc = String.fromCharCode(27);
const plain = (text) => text.replaceAll(new RegExp(`${esc}\\[[0-9;?]*[A-Za-z]`, 'g'), '');
const normal = (path) => path.replace(/^\.\//, '');

for (const { dir, manifest } of publishablePackages()) {
  check(`typedoc entry points of ${manifest.name} are its exports`, () => {
    const exported = Object.values(manifest.exports ?? {})
      .map((target) => (typeof target === 'object' ? target['@tcmu/source'] : undefined))
      .filter(Boolean)
      .map(normal)
      .sort();
    const file = join(dir, 'typedoc.json');
    if (!existsSync(file)) throw new Error(`no ${relative(repo, file)}`);
    const entries = (JSON.parse(readFileSync(file, 'utf8')).entryPoints ?? []).map(normal).sort();
    if (JSON.stringify(entries) !== JSON.stringify(exported)) {
      throw new Error(`entry points ${entries.join(', ')}; exports ${exported.join(', ')}`);
    }
    return entries.join(', ');
  });
}

check('pnpm run docs: 0 warnings, 0 errors', () => {
  const { status, output } = run('pnpm', ['run', 'docs'], { allowFailure: true });
  const lines = plain(output).split('\n');
  const problems = lines.filter((line) => /^\[(warning|error)\] (?!Found \d+ errors)/.test(line));
  if (status !== 0 || problems.length > 0) {
    throw new Error(
      `exit ${status}, ${problems.length} warnings/errors\n${problems.slice(0, 20).join('\n')}`,
    );
  }
  if (!existsSync(join(repo, 'docs/api/index.html'))) throw new Error('no docs/api/index.html');
  return 'docs/api';
});

finish();
