#!/usr/bin/env node
// `pnpm bench:kernel`: tcmufile vs tcmu-runner vs the kernel's fileio backstore, with fio, on the
// real kernel in the kernel-vm (one boot per backstore). Not part of the tests.
//
//   node tools/bench-kernel/run.mjs [--runtime 10] [--only tcmufile,fileio] [--no-record]
//                                   [--tcmufile source|dist]
//
// --only re-runs some backstores and takes the others from their last results
// (.vm-artifacts/bench-kernel/<backstore>.json). The table goes to stdout and, unless
// --no-record, into docs/benchmarks.md, section "Kernel benchmark".
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backstores } from './jobs.mjs';
import { buildRows, formatSection, formatTable, formatVerdict, replaceSection } from './report.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const artifacts = join(repo, '.vm-artifacts', 'bench-kernel');
const docs = join(repo, 'docs', 'benchmarks.md');

const { values } = parseArgs({
  options: {
    runtime: { type: 'string', default: '10' },
    only: { type: 'string' },
    'no-record': { type: 'boolean', default: false },
    tcmufile: { type: 'string', default: 'source' },
  },
});
const runtime = Number(values.runtime);
if (!Number.isInteger(runtime) || runtime < 1 || runtime > 120) {
  console.error('bench-kernel: --runtime must be 1..120 seconds');
  process.exit(2);
}
const selected = values.only ? values.only.split(',').map((name) => name.trim()) : backstores;
const unknown = selected.filter((name) => !backstores.includes(name));
if (unknown.length > 0) {
  console.error(`bench-kernel: unknown backstore ${unknown.join(', ')} (known: ${backstores.join(', ')})`);
  process.exit(2);
}
if (!['source', 'dist'].includes(values.tcmufile)) {
  console.error('bench-kernel: --tcmufile must be source or dist');
  process.exit(2);
}

/** Boots the VM for one backstore; resolves with the guest's exit status. */
function boot(backstore, out) {
  // Six jobs of runtime + ramp, the image fill and set-up, the boot, and a margin.
  const timeout = 6 * (runtime + 1) + 300;
  const args = ['--timeout', String(timeout), '--', 'node', 'tools/bench-kernel/guest.mjs'];
  args.push(
    '--backstore',
    backstore,
    '--runtime',
    String(runtime),
    '--out',
    out,
    '--tcmufile',
    values.tcmufile,
  );
  const child = spawn(join(repo, 'tools/kernel-vm/vm'), args, {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout.pipe(process.stderr); // the guest console; stdout is kept for the table
  return new Promise((done) => child.once('exit', (code, signal) => done(code ?? (signal ? 128 : 1))));
}

const reports = {};
const failures = [];
for (const backstore of backstores) {
  const out = join(artifacts, `${backstore}.json`);
  if (selected.includes(backstore)) {
    rmSync(out, { force: true });
    const hostLoad = loadavg()[0].toFixed(1);
    console.error(`bench-kernel: ${backstore}: booting (host load ${hostLoad})`);
    const status = await boot(backstore, out);
    if (status !== 0 || !existsSync(out)) {
      failures.push(`${backstore} (exit ${status})`);
      continue;
    }
    reports[backstore] = { ...JSON.parse(readFileSync(out, 'utf8')), hostLoad };
    writeFileSync(out, `${JSON.stringify(reports[backstore], null, 2)}\n`);
  } else if (existsSync(out)) {
    reports[backstore] = JSON.parse(readFileSync(out, 'utf8'));
    console.error(`bench-kernel: ${backstore}: reusing the result of ${reports[backstore].date}`);
  }
}

const rows = buildRows(reports);
console.log(formatTable(rows));
console.log(`\n${formatVerdict(rows)}`);
if (failures.length > 0) console.error(`bench-kernel: failed: ${failures.join(', ')}`);

if (!values['no-record'] && Object.keys(reports).length > 0) {
  const any = Object.values(reports)[0];
  const section = formatSection({
    reports,
    rows,
    date: new Date().toISOString().slice(0, 10),
    runtimeSeconds: runtime,
    environment: `Linux ${any.kernel} under qemu TCG, ${any.cpus} vCPUs, fio ${any.fio.replace(/^fio-/, '')}.`,
  });
  const current = existsSync(docs) ? readFileSync(docs, 'utf8') : undefined;
  writeFileSync(docs, replaceSection(current, section));
  console.error(`bench-kernel: recorded in ${docs}`);
}
process.exit(failures.length > 0 ? 1 : 0);
