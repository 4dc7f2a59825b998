#!/usr/bin/env node
// Runs the `kernel` vitest project inside ONE VM booted by ./vm and reports its result.
//
//   node tools/kernel-vm/run-kernel-tests.mjs [vitest args, e.g. a file filter]
//
// Exit status: vitest's inside the guest; non-zero as well when the VM cannot boot,
// times out, or when no kernel test ran at all. The last line is always
// `N passed, N failed` (CI counts it), taken from vitest's JSON report.
// Environment: KERNEL_VM_TIMEOUT (seconds, default 3000), TCMU_VM_CACHE (see ./vm).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const timeoutS = process.env.KERNEL_VM_TIMEOUT ?? '3000';
if (!/^\d+$/.test(timeoutS)) {
  console.error(`run-kernel-tests: KERNEL_VM_TIMEOUT must be whole seconds, got "${timeoutS}"`);
  process.exit(2);
}

// The repo is shared read-write with the guest, so the report lands here directly.
const outDir = join(repo, '.vm-artifacts', `kernel-tests-${process.pid}`);
mkdirSync(outDir, { recursive: true });
const reportFile = join(outDir, 'vitest.json');
const userArgs = process.argv.slice(2).map((arg) =>
  // A path given relative to the caller's cwd must also resolve from the repo root.
  existsSync(arg) ? relative(repo, resolve(arg)) : arg,
);

const vitestArgs = [
  join(repo, 'node_modules/vitest/vitest.mjs'),
  'run',
  '--project',
  'kernel',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${reportFile}`,
  ...userArgs,
];

console.log('run-kernel-tests: booting the VM for the kernel test project');
const child = spawn(
  join(here, 'vm'),
  [
    '--timeout',
    timeoutS,
    '--share',
    repo,
    '--env',
    'CI=1',
    '--env',
    'NO_COLOR=1',
    '--',
    'node',
    ...vitestArgs,
  ],
  { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] },
);
const vmStatus = await new Promise((done) => {
  child.on('error', (err) => {
    console.error(`run-kernel-tests: cannot start the VM harness: ${err.message}`);
    done(125);
  });
  child.on('exit', (code, signal) => done(code ?? (signal ? 128 : 125)));
});

let passed = 0;
let failed = 0;
let report;
try {
  report = JSON.parse(readFileSync(reportFile, 'utf8'));
} catch {
  report = undefined;
}
if (report) {
  passed = report.numPassedTests ?? 0;
  failed = report.numFailedTests ?? 0;
  // A suite that fails to load reports no tests; count it as a failure.
  for (const suite of report.testResults ?? []) {
    if (suite.status === 'failed' && (suite.assertionResults ?? []).length === 0) failed += 1;
  }
}
rmSync(outDir, { recursive: true, force: true });

let status = vmStatus;
if (vmStatus === 124) console.error('run-kernel-tests: the VM timed out');
else if (vmStatus === 125) console.error('run-kernel-tests: the VM or the harness failed');
if (!report && status === 0) {
  console.error('run-kernel-tests: vitest wrote no JSON report');
  status = 1;
}
if (status === 0 && passed + failed === 0) {
  console.error('run-kernel-tests: no kernel test ran');
  status = 1;
}
if (status === 0 && failed > 0) status = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(status);
