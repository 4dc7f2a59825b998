// Report half of `pnpm bench:kernel`: the table (IOPS, MB/s, ratios) and the docs section.
import { backstores, jobs } from './jobs.mjs';

export const sectionTitle = '## Kernel benchmark';

/** Goals from issue 5 §4: ≥ 1.0x tcmu-runner on every row, ≥ 0.85x fileio on 4k random rows. */
export const goals = { versusTcmuRunner: 1.0, versusFileioRandom: 0.85 };

/** The job's result in one backstore's report, or undefined. */
function resultOf(report, jobName) {
  return report?.jobs?.find((job) => job.name === jobName);
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
 * Rows of the comparison: per job, each backstore's IOPS and MB/s, then tcmufile's ratio to
 * tcmu-runner and to fileio, and whether the row meets its goal.
 * `reports` maps a backstore name to its guest JSON.
 */
export function buildRows(reports) {
  return jobs.map((job) => {
    const results = Object.fromEntries(backstores.map((name) => [name, resultOf(reports[name], job.name)]));
    const versusRunner = ratio(results.tcmufile, results['tcmu-runner']);
    const versusFileio = ratio(results.tcmufile, results.fileio);
    let goalMet;
    if (versusRunner !== undefined) {
      goalMet = versusRunner >= goals.versusTcmuRunner;
      if (job.random && job.bs === '4k') {
        goalMet = goalMet && versusFileio !== undefined && versusFileio >= goals.versusFileioRandom;
      }
    }
    return { job, results, versusRunner, versusFileio, goalMet };
  });
}

/** A Markdown table (also readable as plain text on a terminal). */
export function formatTable(rows) {
  const header = ['job', ...backstores.flatMap((name) => [`${name} IOPS`, `${name} MB/s`])];
  header.push('vs tcmu-runner', 'vs fileio', 'goal');
  const lines = [header, header.map((_cell, i) => (i === 0 ? '---' : '---:'))];
  for (const row of rows) {
    lines.push([
      row.job.name,
      ...backstores.flatMap((name) => [iops(row.results[name]), mbps(row.results[name])]),
      formatRatio(row.versusRunner),
      formatRatio(row.versusFileio),
      row.goalMet === undefined ? 'n/a' : row.goalMet ? 'met' : 'not met',
    ]);
  }
  return lines.map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

/** One line per backstore: when it ran and with what. */
export function formatProvenance(reports) {
  return backstores
    .map((name) => {
      const report = reports[name];
      if (!report) return `- ${name}: no result`;
      const extra = [
        report.fileioMode && `mode ${report.fileioMode}`,
        report.tcmuRunnerVersion && `tcmu-runner ${report.tcmuRunnerVersion}`,
        report.handler && `handler ${report.handler}`,
        report.tcmufile && `tcmufile from ${report.tcmufile}`,
        report.node && `node ${report.node}`,
        report.rounds && `best of ${report.rounds} boots`,
        report.hostLoad && `host load ${report.hostLoad}`,
      ]
        .filter(Boolean)
        .join(', ');
      return `- ${name}: ${report.date}, kernel ${report.kernel}, ${report.fio}${extra ? `, ${extra}` : ''}`;
    })
    .join('\n');
}

/** Where tcmufile stands against the goals, in one or two sentences. */
export function formatVerdict(rows) {
  const measured = rows.filter((row) => row.goalMet !== undefined);
  if (measured.length === 0) return 'tcmufile has no result yet: the goals cannot be assessed.';
  const missed = measured.filter((row) => !row.goalMet).map((row) => row.job.name);
  const runnerRatios = measured.map((row) => row.versusRunner);
  const range = `${formatRatio(Math.min(...runnerRatios))} to ${formatRatio(Math.max(...runnerRatios))} of tcmu-runner`;
  return missed.length === 0
    ? `All ${measured.length} rows meet the goals (${range}).`
    : `${measured.length - missed.length} of ${measured.length} rows meet the goals (${range}); not met: ${missed.join(', ')}.`;
}

/** The whole docs section for one run. */
export function formatSection({ reports, rows, date, runtimeSeconds, environment }) {
  return `${sectionTitle}

\`pnpm bench:kernel\` (tools/bench-kernel/run.mjs) boots the kernel-vm once per backstore and runs
fio (libaio, O_DIRECT, ${runtimeSeconds} s per job after 1 s ramp) on a tcm_loop disk backed by a
256 MiB file of random data on the guest's tmpfs, 512-byte blocks:

- **fileio**: the kernel's own target_core_file backstore (the ceiling: no userspace round trip);
- **tcmu-runner**: Debian's tcmu-runner, qcow handler serving the raw file (it has no file handler);
- **tcmufile**: \`tcmufile serve\` (@tcmu/device with the file backend).

Each backstore has its own boot (tcmu-runner must not share one with another TCMU handler).
Goals (issue 5): at least ${goals.versusTcmuRunner.toFixed(1)}x tcmu-runner on every row and
${goals.versusFileioRandom}x fileio on the 4k random rows. The ratios are by IOPS (same block size
per row, so MB/s gives the same ratio).

### ${date}

${environment}

${formatTable(rows)}

${formatVerdict(rows)}

${formatProvenance(reports)}

Absolute numbers come from an emulated CPU (qemu TCG: about 2-3 ms per I/O) on a shared
2-core machine, and each backstore ran in a different boot: compare ratios, not values, and
expect some noise between runs.
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
