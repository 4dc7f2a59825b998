// Sums the test counts of `pnpm test:all`: the unit run's vitest summary line
// ("Tests  N passed | M failed (T)") and the kernel runner's own
// "N passed, N failed" line (which also counts suites that failed to load);
// then the counts of the CI's own steps (tools/ci/*.mjs), each of which ends its
// log with "<label>: N passed, N failed".
// Prints the totals alone on the last line and exits non-zero on any failure.
//
//   node .ci/totals.mjs <test:all log> <its exit status> [<step log> <its exit status>]...
import { readFileSync } from 'node:fs';

const [, , logFile, rcText, ...steps] = process.argv;
const esc = String.fromCharCode(27);
const read = (file) =>
  readFileSync(file, 'utf8')
    .replaceAll(new RegExp(`${esc}\\[[0-9;?]*[A-Za-z]`, 'g'), '')
    .replace(/\r/g, '');
const text = read(logFile);
const marker = 'run-kernel-tests: booting the VM';
const at = text.indexOf(marker);
const unitPart = at < 0 ? text : text.slice(0, at);
const kernelPart = at < 0 ? '' : text.slice(at);

let passed = 0;
let failed = 0;
for (const line of unitPart.split('\n')) {
  const summary = /^\s*Tests\s+(.*)\((\d+)\)\s*$/.exec(line);
  if (!summary) continue;
  passed += Number(/(\d+) passed/.exec(summary[1])?.[1] ?? 0);
  failed += Number(/(\d+) failed/.exec(summary[1])?.[1] ?? 0);
}
const kernelTotals = [...kernelPart.matchAll(/^(\d+) passed, (\d+) failed$/gm)].at(-1);
if (kernelTotals) {
  passed += Number(kernelTotals[1]);
  failed += Number(kernelTotals[2]);
}
const rc = Number(rcText);
if (rc !== 0 && failed === 0) failed = 1; // a failure no test counted (a build step, the VM...)

let stepsFailed = false;
for (let i = 0; i < steps.length; i += 2) {
  const stepRc = Number(steps[i + 1]);
  let stepText = '';
  try {
    stepText = read(steps[i]);
  } catch {}
  const totals = [...stepText.matchAll(/^(?:[\w-]+: )?(\d+) passed, (\d+) failed$/gm)].at(-1);
  const stepPassed = Number(totals?.[1] ?? 0);
  let stepFailed = Number(totals?.[2] ?? 0);
  if (stepRc !== 0 && stepFailed === 0) stepFailed = 1; // the step died before counting
  if (stepRc !== 0 || stepFailed > 0 || stepPassed === 0) stepsFailed = true;
  passed += stepPassed;
  failed += stepFailed;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(rc !== 0 || stepsFailed || failed > 0 || passed === 0 ? 1 : 0);
