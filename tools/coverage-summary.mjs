// Prints line coverage per package from vitest's json-summary report
// (coverage/coverage-summary.json), after `vitest run --coverage`.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

const summary = JSON.parse(readFileSync('coverage/coverage-summary.json', 'utf8'));
const perPackage = new Map();
for (const [file, data] of Object.entries(summary)) {
  if (file === 'total') continue;
  const pkg = relative(process.cwd(), file).split('/').slice(0, 2).join('/');
  const acc = perPackage.get(pkg) ?? { covered: 0, total: 0 };
  acc.covered += data.lines.covered;
  acc.total += data.lines.total;
  perPackage.set(pkg, acc);
}
console.log('line coverage by package:');
for (const [pkg, { covered, total }] of [...perPackage].sort()) {
  console.log(`  ${pkg.padEnd(20)} ${((100 * covered) / total).toFixed(2)}% (${covered}/${total})`);
}
