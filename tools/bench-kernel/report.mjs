// Report half of `pnpm bench:kernel`: medians over rounds, the table (IOPS, MB/s, ratios) and
// the docs section.
import { backstores, jobs, rbdBackstores } from './jobs.mjs';

export const sectionTitle = '## Kernel benchmark';

/**
 * Goals from issue 8: tcmufile at least 1.0x tcmu-runner on every row, and at least 0.9x
 * c-minimal (the minimal C consumer) on the rows named in `cMinimalRows`.
 */
export const goals = {
  versusTcmuRunner: 1.0,
  versusCMinimal: 0.9,
  cMinimalRows: ['4k-randread-qd1', '4k-randwrite-qd1', '128k-read-qd16', '128k-write-qd16'],
};

/** Ratio columns: [ours, reference, the row's field]. */
const comparisons = [
  ['tcmufile', 'tcmu-runner', 'versusRunner'],
  ['tcmufile', 'c-minimal', 'versusCMinimal'],
  ['tcmufile-sync', 'tcmu-runner', 'syncVersusRunner'],
  ['tcmufile-rbd', 'tcmu-runner-rbd', 'rbdVersusRunner'],
];

/**
 * The rounds of one backstore's saved report: `{rounds: [guest JSON, ...]}` (run.mjs), or a
 * bare guest JSON (one round; results saved before rounds were kept).
 */
export function roundsOf(report) {
  if (!report) return [];
  return Array.isArray(report.rounds) ? report.rounds : [report];
}

/**
 * Per job, the median round by IOPS: with an odd count the middle round's result; with an
 * even count the lower middle one, its IOPS and MB/s replaced by the mean of the two middle
 * rounds. Undefined when no round has the job.
 */
export function medianResult(report, jobName) {
  const results = roundsOf(report)
    .map((round) => round?.jobs?.find((job) => job.name === jobName))
    .filter((result) => result && Number.isFinite(result.iops))
    .sort((a, b) => a.iops - b.iops);
  if (results.length === 0) return undefined;
  const middle = Math.floor((results.length - 1) / 2);
  const low = results[middle];
  if (results.length % 2 === 1) return low;
  const high = results[middle + 1];
  return {
    ...low,
    iops: (low.iops + high.iops) / 2,
    bytesPerSecond: (low.bytesPerSecond + high.bytesPerSecond) / 2,
  };
}

/** Per job in row order, [min, max] IOPS over the rounds (undefined for a job no round has). */
export function spreadOf(report) {
  return jobs.map((job) => {
    const values = roundsOf(report)
      .map((round) => round?.jobs?.find((result) => result.name === job.name)?.iops)
      .filter((value) => Number.isFinite(value));
    return values.length === 0 ? undefined : [Math.min(...values), Math.max(...values)];
  });
}

/** ours / reference by IOPS (MB/s gives the same ratio: one block size per row). */
export function ratio(ours, reference) {
  if (!ours || !reference || !(reference.iops > 0)) return undefined;
  return ours.iops / reference.iops;
}

export function formatRatio(value) {
  return value === undefined ? 'n/a' : `${value.toFixed(2)}x`;
}

const iops = (result) => (result ? String(Math.round(result.iops)) : 'n/a');
const mbps = (result) => (result ? (result.bytesPerSecond / 1e6).toFixed(1) : 'n/a');

/**
 * Rows of the comparison: per job, each backstore's median result, tcmufile's ratios to
 * tcmu-runner and c-minimal (and tcmufile-sync's to tcmu-runner), and the goal: `goalMet` is
 * true or false, or undefined when tcmufile or a reference the row needs has no result;
 * `misses` names the references the row falls short of.
 * `reports` maps a backstore name to its saved report (see roundsOf).
 */
export function buildRows(reports) {
  return jobs.map((job) => {
    const results = Object.fromEntries(
      backstores.map((name) => [name, medianResult(reports[name], job.name)]),
    );
    const versusRunner = ratio(results.tcmufile, results['tcmu-runner']);
    const versusCMinimal = ratio(results.tcmufile, results['c-minimal']);
    const syncVersusRunner = ratio(results['tcmufile-sync'], results['tcmu-runner']);
    // Issue 13: tcmufile on an RBD image at least 1.0x tcmu-runner's rbd handler (its own goal).
    const rbdVersusRunner = ratio(results['tcmufile-rbd'], results['tcmu-runner-rbd']);
    const rbdGoalMet = rbdVersusRunner === undefined ? undefined : rbdVersusRunner >= goals.versusTcmuRunner;
    const needsCMinimal = goals.cMinimalRows.includes(job.name);
    const misses = [];
    if (versusRunner !== undefined && versusRunner < goals.versusTcmuRunner) misses.push('tcmu-runner');
    if (needsCMinimal && versusCMinimal !== undefined && versusCMinimal < goals.versusCMinimal)
      misses.push('c-minimal');
    const assessable = versusRunner !== undefined && (!needsCMinimal || versusCMinimal !== undefined);
    // A miss is a miss even when the other reference is missing; a pass needs both.
    const goalMet = misses.length > 0 ? false : assessable ? true : undefined;
    return {
      job,
      results,
      versusRunner,
      versusCMinimal,
      syncVersusRunner,
      rbdVersusRunner,
      goalMet,
      rbdGoalMet,
      misses,
    };
  });
}

/** The backstores with a result in at least one row, in table order. */
function present(rows) {
  return backstores.filter((name) => rows.some((row) => row.results[name]));
}

/**
 * A Markdown table (also readable as plain text on a terminal): IOPS and MB/s of every
 * backstore with a result, a ratio column for each comparison whose two sides have results,
 * and the goal.
 */
export function formatTable(rows) {
  const names = present(rows);
  const ratios = comparisons.filter(([ours, reference]) => names.includes(ours) && names.includes(reference));
  const header = ['job', ...names.flatMap((name) => [`${name} IOPS`, `${name} MB/s`])];
  header.push(...ratios.map(([ours, reference]) => `${ours} vs ${reference}`), 'goal');
  const lines = [header, header.map((_cell, i) => (i === 0 ? '---' : '---:'))];
  for (const row of rows) {
    lines.push([
      row.job.name,
      ...names.flatMap((name) => [iops(row.results[name]), mbps(row.results[name])]),
      ...ratios.map(([, , field]) => formatRatio(row[field])),
      // The file goals when the file rows ran, else the RBD pair's.
      goalCell(row.goalMet ?? row.rbdGoalMet),
    ]);
  }
  return lines.map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

const goalCell = (met) => (met === undefined ? 'n/a' : met ? 'met' : 'not met');

/** "701-760 / 6100-6400 / ...": each row's IOPS over the rounds, in row order. */
function formatSpread(report) {
  return spreadOf(report)
    .map((range) => (range ? `${Math.round(range[0])}-${Math.round(range[1])}` : 'n/a'))
    .join(' / ');
}

/** One line per backstore: when it ran, with what, how many rounds and how far they spread. */
export function formatProvenance(reports) {
  return backstores
    .filter((name) => reports[name] || !rbdBackstores.includes(name)) // the RBD pair only when run
    .map((name) => {
      const report = reports[name];
      if (!report) return `- ${name}: no result`;
      const rounds = roundsOf(report);
      const loads = rounds.map((round) => round.hostLoad).filter(Boolean);
      const extra = [
        report.fileioMode && `mode ${report.fileioMode}`,
        report.tcmuRunnerVersion && `tcmu-runner ${report.tcmuRunnerVersion}`,
        report.handler && `handler ${report.handler}`,
        report.ceph,
        report.consumer && `consumer ${report.consumer}`,
        report.tcmufile && `tcmufile from ${report.tcmufile}`,
        report.io,
        report.node && `node ${report.node}`,
        rounds.length === 1 ? 'one round' : `median of ${rounds.length} interleaved rounds`,
        rounds.length > 1 && `IOPS min-max per row ${formatSpread(report)}`,
        loads.length > 0 && `host load ${loads.join('; ')}`,
      ]
        .filter(Boolean)
        .join(', ');
      return `- ${name}: ${report.date}, kernel ${report.kernel}, ${report.fio}${extra ? `, ${extra}` : ''}`;
    })
    .join('\n');
}

/** The range of defined ratios, "0.80x to 1.20x", or undefined. */
function range(values) {
  const defined = values.filter((value) => value !== undefined);
  if (defined.length === 0) return undefined;
  return `${formatRatio(Math.min(...defined))} to ${formatRatio(Math.max(...defined))}`;
}

/** The RBD pair's sentence: rows at 1.0x tcmu-runner's rbd handler or better, and the range. */
export function formatRbdVerdict(rows) {
  const judged = rows.filter((row) => row.rbdGoalMet !== undefined);
  if (judged.length === 0) return undefined;
  const missed = judged
    .filter((row) => !row.rbdGoalMet)
    .map((row) => `${row.job.name} (${formatRatio(row.rbdVersusRunner)})`);
  const summary = `RBD: ${judged.length - missed.length} of ${judged.length} rows at ${goals.versusTcmuRunner.toFixed(1)}x tcmu-runner's rbd handler or better (${range(rows.map((row) => row.rbdVersusRunner))})`;
  return missed.length === 0 ? `${summary}.` : `${summary}; not met: ${missed.join(', ')}.`;
}

/** Where tcmufile stands against the goals, in one or two sentences; names the rows that miss. */
export function formatVerdict(rows) {
  const rbd = formatRbdVerdict(rows);
  const file = formatFileVerdict(rows);
  return rbd === undefined ? file : rows.some((row) => row.results.tcmufile) ? `${file} ${rbd}` : rbd;
}

function formatFileVerdict(rows) {
  if (!rows.some((row) => row.results.tcmufile))
    return 'tcmufile has no result yet: the goals cannot be assessed.';
  const versusRunner = range(rows.map((row) => row.versusRunner));
  const versusCMinimal = range(rows.map((row) => row.versusCMinimal));
  const ranges = [
    versusRunner && `${versusRunner} of tcmu-runner`,
    versusCMinimal && `${versusCMinimal} of c-minimal`,
  ]
    .filter(Boolean)
    .join(', ');
  const judged = rows.filter((row) => row.goalMet !== undefined);
  const open = rows.filter((row) => row.goalMet === undefined).map((row) => row.job.name);
  const openNote = open.length > 0 ? ` Not assessed (a reference has no result): ${open.join(', ')}.` : '';
  if (judged.length === 0) return `The goals cannot be assessed: tcmu-runner or c-minimal has no result.`;
  const missed = judged.filter((row) => !row.goalMet);
  const summary = `${judged.length - missed.length} of ${judged.length} rows meet the goals (${ranges})`;
  if (missed.length === 0) return `${summary}.${openNote}`;
  const named = missed.map((row) => {
    const parts = row.misses.map((reference) =>
      reference === 'tcmu-runner'
        ? `${formatRatio(row.versusRunner)} of tcmu-runner`
        : `${formatRatio(row.versusCMinimal)} of c-minimal`,
    );
    return `${row.job.name} (${parts.join(', ')})`;
  });
  return `${summary}; not met: ${named.join(', ')}.${openNote}`;
}

/** The number of rounds behind the table, "3" or "1-3" when backstores differ. */
function roundCount(reports) {
  const counts = Object.values(reports).map((report) => roundsOf(report).length);
  if (counts.length === 0) return '0';
  const low = Math.min(...counts);
  const high = Math.max(...counts);
  return low === high ? String(low) : `${low}-${high}`;
}

/** The whole docs section for one run. */
export function formatSection({ reports, rows, date, runtimeSeconds, environment }) {
  return `${sectionTitle}

\`pnpm bench:kernel\` (tools/bench-kernel/run.mjs) boots the kernel-vm once per backstore and round
and runs fio (libaio, O_DIRECT, ${runtimeSeconds} s per job after 1 s ramp) on a tcm_loop disk backed
by a 256 MiB file of random data on the guest's tmpfs, 512-byte blocks:

- **fileio**: the kernel's own target_core_file backstore (the ceiling: no userspace round trip);
- **tcmu-runner**: Debian's tcmu-runner, qcow handler serving the raw file (it has no file handler);
- **c-minimal**: tools/bench-kernel/minimal-consumer.c, the least a TCMU consumer can do (one
  thread, libc only, preadv/pwritev straight on the ring's iovecs, one kick per batch);
- **tcmufile**: \`tcmufile serve\` (@tcmu/device with the file backend), the CLI's default I/O mode;
- **tcmufile-sync**: the same with \`--io sync\`.

Each backstore has its own boot per round (tcmu-runner must not share one with another TCMU
handler); rounds are interleaved (round 1 of every backstore, then round 2, ...) and the table
shows each job's median over the rounds (median of ${roundCount(reports)} interleaved rounds).
Goals (issue 8): tcmufile at least ${goals.versusTcmuRunner.toFixed(1)}x tcmu-runner on every row and
${goals.versusCMinimal}x c-minimal on ${goals.cMinimalRows.join(', ')}. The ratios are by IOPS
(same block size per row, so MB/s gives the same ratio).

### ${date}

${environment}

${formatTable(rows)}

${formatVerdict(rows)}

${formatProvenance(reports)}

Absolute numbers come from an emulated CPU (qemu TCG: about 2-3 ms per I/O) on a shared
2-core machine, and each backstore ran in different boots: compare ratios, not values, and
expect some noise between rounds (the min-max above).
`;
}

/** Replaces (or appends) our section, leaving every other section of the file as it was. */
export function replaceSection(document, section) {
  const text = document ?? '# Benchmarks\n';
  const start = text.indexOf(`${sectionTitle}\n`);
  if (start === -1) return `${text.trimEnd()}\n\n${section.trimEnd()}\n`;
  const next = text.indexOf('\n## ', start + sectionTitle.length);
  const end = next === -1 ? text.length : next + 1;
  const rest = text.slice(end);
  return `${text.slice(0, start)}${section.trimEnd()}\n${rest ? `\n${rest}` : ''}`;
}
