#!/usr/bin/env node
// `pnpm bench:kernel`: tcmufile vs tcmu-runner vs the kernel's fileio backstore, with fio, on the
// real kernel in the kernel-vm (one boot per backstore). Not part of the tests.
//
//   node tools/bench-kernel/run.mjs [--runtime 10] [--rounds 1] [--only tcmufile,fileio]
//                                   [--no-record] [--tcmufile source|dist] [--from-saved]
//
// --from-saved boots nothing: it rebuilds the table (and the docs section) from the last results.
// --rounds N boots each backstore N times, alternating, and keeps each job's best run: the
// machine is shared, and the best of several runs is the least disturbed by other load.
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
    rounds: { type: 'string', default: '1' },
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
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 5) {
  console.error('bench-kernel: --rounds must be 1..5');
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

/** Per job, the run with the most IOPS. */
function bestOf(previous, next) {
  if (!previous) return next;
  const jobs = next.jobs.map((job) => {
    const earlier = previous.jobs.find((candidate) => candidate.name === job.name);
    return earlier && earlier.iops > job.iops ? earlier : job;
  });
  return {
    ...next,
    jobs,
    rounds: (previous.rounds ?? 1) + 1,
    hostLoad: `${previous.hostLoad}; ${next.hostLoad}`,
  };
}

const reports = {};
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
    reports[backstore] = bestOf(reports[backstore], { ...JSON.parse(readFileSync(out, 'utf8')), hostLoad });
    rmSync(out, { force: true });
  }
}
for (const backstore of backstores) {
  const saved = join(artifacts, `${backstore}.json`);
  if (reports[backstore]) {
    writeFileSync(saved, `${JSON.stringify(reports[backstore], null, 2)}\n`);
  } else if (!selected.includes(backstore) && existsSync(saved)) {
    reports[backstore] = JSON.parse(readFileSync(saved, 'utf8'));
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
