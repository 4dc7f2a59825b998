#!/usr/bin/env node
// `pnpm bench:kernel`: tcmufile vs tcmu-runner vs a minimal C consumer vs the kernel's fileio
// backstore, with fio, on the real kernel in the kernel-vm (one boot per backstore and round).
// Not part of the tests.
//
//   node tools/bench-kernel/run.mjs [--runtime 10] [--rounds 3] [--only tcmufile,fileio]
//                                   [--no-record] [--tcmufile source|dist] [--from-saved]
//
// --from-saved boots nothing: it rebuilds the table (and the docs section) from the last results.
// --rounds N (1..9) boots each selected backstore N times, interleaved (round 1 of every
// backstore, then round 2, ...), so slow phases of the shared host hit all of them alike; every
// round is kept and the table shows each job's median over the rounds.
// --only re-runs some backstores and takes the others from their last results
// (.vm-artifacts/bench-kernel/<backstore>.json, {rounds: [guest JSON, ...], ...}). The table goes
// to stdout and, unless --no-record, into docs/benchmarks.md, section "Kernel benchmark".
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backstores, jobs } from './jobs.mjs';
import {
  buildRows,
  formatSection,
  formatTable,
  formatVerdict,
  medianResult,
  replaceSection,
} from './report.mjs';

const jobNames = jobs.map((job) => job.name);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const artifacts = join(repo, '.vm-artifacts', 'bench-kernel');
const docs = join(repo, 'docs', 'benchmarks.md');

const { values } = parseArgs({
  options: {
    runtime: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
    'no-record': { type: 'boolean', default: false },
    'from-saved': { type: 'boolean', default: false },
    tcmufile: { type: 'string', default: 'source' },
  },
});
const runtime = Number(values.runtime);
if (!Number.isInteger(runtime) || runtime < 1 || runtime > 120) {
  console.error('bench-kernel: --runtime must be 1..120 seconds');
  process.exit(2);
}
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9) {
  console.error('bench-kernel: --rounds must be 1..9');
  process.exit(2);
}
const selected = values['from-saved']
  ? []
  : values.only
    ? values.only.split(',').map((name) => name.trim())
    : backstores;
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

/** The saved form: every round, the last round's description, and the median jobs for a reader. */
function saved(rounds) {
  const { jobs: _jobs, hostLoad: _load, round: _round, ...last } = rounds[rounds.length - 1];
  const report = { ...last, rounds };
  return { ...report, jobs: jobNames.map((name) => medianResult(report, name)).filter(Boolean) };
}

const runs = {}; // backstore -> its rounds that succeeded, in order
const failures = [];
for (let round = 1; round <= rounds; round++) {
  for (const backstore of backstores) {
    if (!selected.includes(backstore)) continue;
    const out = join(artifacts, `${backstore}.round.json`);
    rmSync(out, { force: true });
    const loadBefore = loadavg()[0].toFixed(1);
    console.error(`bench-kernel: ${backstore}: round ${round}/${rounds}: booting (host load ${loadBefore})`);
    const status = await boot(backstore, out);
    if (status !== 0 || !existsSync(out)) {
      failures.push(`${backstore} round ${round} (exit ${status})`);
      continue;
    }
    const hostLoad = `${loadBefore}-${loadavg()[0].toFixed(1)}`;
    const result = { ...JSON.parse(readFileSync(out, 'utf8')), round, hostLoad };
    runs[backstore] = [...(runs[backstore] ?? []), result];
    rmSync(out, { force: true });
  }
}
const reports = {};
for (const backstore of backstores) {
  const file = join(artifacts, `${backstore}.json`);
  if (runs[backstore]) {
    reports[backstore] = saved(runs[backstore]);
    writeFileSync(file, `${JSON.stringify(reports[backstore], null, 2)}\n`);
  } else if (!selected.includes(backstore) && existsSync(file)) {
    reports[backstore] = JSON.parse(readFileSync(file, 'utf8'));
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
