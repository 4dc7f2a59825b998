// Sums the test counts printed by the unit run (vitest summary) and the kernel
// run (its "N passed, N failed" line), prints them alone on the last line, and
// exits non-zero when anything failed or the test command itself failed.
import { readFileSync } from 'node:fs';

const [, , logFile, rcText] = process.argv;
const text = readFileSync(logFile, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
let passed = 0;
let failed = 0;
for (const line of text.split('\n')) {
  const vitest = /^\s*Tests\s+(.*)\((\d+)\)\s*$/.exec(line);
  if (vitest) {
    passed += Number(/(\d+) passed/.exec(vitest[1])?.[1] ?? 0);
    failed += Number(/(\d+) failed/.exec(vitest[1])?.[1] ?? 0);
  }
}
const rc = Number(rcText);
if (rc !== 0 && failed === 0) failed = 1; // a failure that no test counted (build, VM boot...)
console.log(`${passed} passed, ${failed} failed`);
process.exit(rc !== 0 || failed > 0 || passed === 0 ? 1 : 0);
