import { describe, expect, it } from 'vitest';
import { jobs } from './jobs.mjs';
import {
  buildRows,
  formatProvenance,
  formatSection,
  formatTable,
  formatVerdict,
  medianResult,
  replaceSection,
  roundsOf,
  spreadOf,
} from './report.mjs';

type Job = (typeof jobs)[number];

/** One round of a backstore: every job has `iops` (MB/s follows from the block size). */
function round(backstore: string, iopsByJob: (job: Job) => number, hostLoad = '0.5-0.7') {
  return {
    backstore,
    date: '2026-01-01T00:00:00.000Z',
    kernel: '6.1.0-56-amd64',
    fio: 'fio-3.33',
    cpus: 2,
    hostLoad,
    jobs: jobs.map((job) => {
      const iops = iopsByJob(job);
      return { ...job, iops, bytesPerSecond: iops * (job.bs === '4k' ? 4096 : 131072) };
    }),
  };
}

/** A saved report as run.mjs writes it: the rounds, and the last round's description on top. */
function report(backstore: string, ...perRound: ((job: Job) => number)[]) {
  const rounds = perRound.map((iopsByJob, i) => round(backstore, iopsByJob, `${i}.0-${i}.5`));
  const { jobs: _jobs, hostLoad: _load, ...last } = rounds[rounds.length - 1]!;
  return { ...last, rounds };
}

const flat = (iops: number) => () => iops;
const byName = (rows: ReturnType<typeof buildRows>, name: string) =>
  rows.find((row) => row.job.name === name)!;

describe('medians over rounds', () => {
  it('takes the middle round per job, not the best, and each job on its own', () => {
    // round 2 is the best on 4k-randread-qd1, round 3 on the others
    const saved = report(
      'fileio',
      flat(100),
      (job) => (job.name === '4k-randread-qd1' ? 900 : 200),
      (job) => (job.name === '4k-randread-qd1' ? 300 : 800),
    );
    expect(medianResult(saved, '4k-randread-qd1')?.iops).toBe(300);
    expect(medianResult(saved, '128k-write-qd16')?.iops).toBe(200);
    expect(medianResult(saved, '128k-write-qd16')?.bytesPerSecond).toBe(200 * 131072);
  });

  it('averages the two middle rounds for an even count', () => {
    const saved = report('fileio', flat(100), flat(400), flat(200), flat(1000));
    expect(medianResult(saved, '4k-randwrite-qd16')?.iops).toBe(300);
    expect(medianResult(saved, '4k-randwrite-qd16')?.bytesPerSecond).toBe(300 * 4096);
  });

  it('reads a bare guest report (saved before rounds were kept) as one round', () => {
    const bare = round('fileio', flat(700));
    expect(roundsOf(bare)).toEqual([bare]);
    expect(medianResult(bare, '4k-randread-qd16')?.iops).toBe(700);
    expect(roundsOf(undefined)).toEqual([]);
    expect(medianResult(undefined, '4k-randread-qd16')).toBeUndefined();
  });

  it('gives each row its min-max over the rounds', () => {
    const saved = report('fileio', flat(100), (job) => (job.iodepth === 1 ? 150 : 90), flat(120));
    const spread = spreadOf(saved);
    expect(spread).toHaveLength(jobs.length);
    expect(spread[0]).toEqual([100, 150]); // 4k-randread-qd1
    expect(spread[1]).toEqual([90, 120]); // 4k-randread-qd16
  });
});

describe('buildRows and the goals (issue 8)', () => {
  it('compares the medians: tcmufile to tcmu-runner and c-minimal, tcmufile-sync to tcmu-runner', () => {
    const rows = buildRows({
      'tcmu-runner': report('tcmu-runner', flat(800), flat(1000), flat(900)),
      'c-minimal': report('c-minimal', flat(2000), flat(1000), flat(1100)),
      tcmufile: report('tcmufile', flat(1000), flat(990), flat(5000)),
      'tcmufile-sync': report('tcmufile-sync', flat(450)),
    });
    expect(rows).toHaveLength(6);
    const row = byName(rows, '4k-randread-qd16');
    expect(row.results['tcmu-runner']?.iops).toBe(900);
    expect(row.versusRunner).toBeCloseTo(1000 / 900);
    expect(row.versusCMinimal).toBeCloseTo(1000 / 1100);
    expect(row.syncVersusRunner).toBeCloseTo(0.5);
  });

  it('needs 0.9x c-minimal only on the qd1 and 128k rows', () => {
    const rows = buildRows({
      'tcmu-runner': report('tcmu-runner', flat(500)),
      'c-minimal': report('c-minimal', flat(1000)),
      tcmufile: report('tcmufile', flat(800)), // 1.6x tcmu-runner, 0.8x c-minimal
    });
    const cMinimalRows = ['4k-randread-qd1', '4k-randwrite-qd1', '128k-read-qd16', '128k-write-qd16'];
    for (const row of rows) {
      const needed = cMinimalRows.includes(row.job.name);
      expect(row.goalMet, row.job.name).toBe(!needed);
      expect(row.misses).toEqual(needed ? ['c-minimal'] : []);
    }
  });

  it('needs 1.0x tcmu-runner on every row, and counts 0.9x c-minimal as met', () => {
    const rows = buildRows({
      'tcmu-runner': report('tcmu-runner', (job) => (job.name === '4k-randwrite-qd16' ? 901 : 900)),
      'c-minimal': report('c-minimal', flat(1000)),
      tcmufile: report('tcmufile', flat(900)), // exactly 1.0x and 0.9x
    });
    expect(byName(rows, '4k-randwrite-qd16').goalMet).toBe(false);
    expect(byName(rows, '4k-randwrite-qd16').misses).toEqual(['tcmu-runner']);
    expect(rows.filter((row) => row.goalMet).map((row) => row.job.name)).toHaveLength(5);
  });

  it('leaves a row open when a reference it needs is missing, but a miss stays a miss', () => {
    const rows = buildRows({
      'tcmu-runner': report('tcmu-runner', (job) => (job.name === '4k-randread-qd16' ? 2000 : 500)),
      tcmufile: report('tcmufile', flat(1000)),
    });
    expect(byName(rows, '4k-randread-qd1').goalMet).toBeUndefined(); // needs c-minimal
    expect(byName(rows, '4k-randwrite-qd16').goalMet).toBe(true); // tcmu-runner only
    expect(byName(rows, '4k-randread-qd16').goalMet).toBe(false);
  });

  it('has no ratios or goals without tcmufile', () => {
    const rows = buildRows({
      fileio: report('fileio', flat(1000)),
      'tcmu-runner': report('tcmu-runner', flat(500)),
    });
    expect(rows.every((row) => row.versusRunner === undefined && row.goalMet === undefined)).toBe(true);
    expect(formatVerdict(rows)).toMatch(/no result yet/);
  });
});

describe('formatting', () => {
  const all = {
    fileio: report('fileio', flat(3000), flat(3200), flat(3100)),
    'tcmu-runner': report('tcmu-runner', flat(1000), flat(900), flat(1100)),
    'c-minimal': report('c-minimal', flat(2000), flat(1900), flat(2100)),
    tcmufile: report(
      'tcmufile',
      (job) => (job.name === '4k-randwrite-qd1' ? 500 : 1900),
      (job) => (job.name === '4k-randwrite-qd1' ? 400 : 1800),
      (job) => (job.name === '4k-randwrite-qd1' ? 600 : 2000),
    ),
    'tcmufile-sync': report('tcmufile-sync', flat(1200), flat(1300), flat(1250)),
  };
  const rows = buildRows(all);

  it('prints a Markdown table with every backstore, the three ratios and the goal', () => {
    const table = formatTable(rows).split('\n');
    expect(table[0]).toBe(
      '| job | fileio IOPS | fileio MB/s | tcmu-runner IOPS | tcmu-runner MB/s | c-minimal IOPS | c-minimal MB/s' +
        ' | tcmufile IOPS | tcmufile MB/s | tcmufile-sync IOPS | tcmufile-sync MB/s' +
        ' | tcmufile vs tcmu-runner | tcmufile vs c-minimal | tcmufile-sync vs tcmu-runner | goal |',
    );
    expect(table[1]).toBe(`| --- |${' ---: |'.repeat(14)}`);
    expect(table).toHaveLength(2 + jobs.length);
    expect(table).toContain(
      '| 128k-write-qd16 | 3100 | 406.3 | 1000 | 131.1 | 2000 | 262.1 | 1900 | 249.0 | 1250 | 163.8 | 1.90x | 0.95x | 1.25x | met |',
    );
    expect(table).toContain(
      '| 4k-randwrite-qd1 | 3100 | 12.7 | 1000 | 4.1 | 2000 | 8.2 | 500 | 2.0 | 1250 | 5.1 | 0.50x | 0.25x | 1.25x | not met |',
    );
  });

  it('has columns only for the backstores present, and ratios only when both sides are', () => {
    const table = formatTable(buildRows({ fileio: all.fileio, 'c-minimal': all['c-minimal'] })).split('\n');
    expect(table[0]).toBe('| job | fileio IOPS | fileio MB/s | c-minimal IOPS | c-minimal MB/s | goal |');
    expect(table).toContain('| 4k-randread-qd1 | 3100 | 12.7 | 2000 | 8.2 | n/a |');
    const some = formatTable(buildRows({ 'c-minimal': all['c-minimal'], tcmufile: all.tcmufile })).split(
      '\n',
    );
    expect(some[0]).toBe(
      '| job | c-minimal IOPS | c-minimal MB/s | tcmufile IOPS | tcmufile MB/s | tcmufile vs c-minimal | goal |',
    );
  });

  it('names the rows that miss, and by how much', () => {
    expect(formatVerdict(rows)).toBe(
      '5 of 6 rows meet the goals (0.50x to 1.90x of tcmu-runner, 0.25x to 0.95x of c-minimal); ' +
        'not met: 4k-randwrite-qd1 (0.50x of tcmu-runner, 0.25x of c-minimal).',
    );
    const close = buildRows({ ...all, tcmufile: report('tcmufile', flat(1700)) });
    expect(formatVerdict(close)).toBe(
      '2 of 6 rows meet the goals (1.70x to 1.70x of tcmu-runner, 0.85x to 0.85x of c-minimal); ' +
        'not met: 4k-randread-qd1 (0.85x of c-minimal), 4k-randwrite-qd1 (0.85x of c-minimal), ' +
        '128k-read-qd16 (0.85x of c-minimal), 128k-write-qd16 (0.85x of c-minimal).',
    );
    const fast = buildRows({ ...all, tcmufile: report('tcmufile', flat(2000)) });
    expect(formatVerdict(fast)).toBe(
      '6 of 6 rows meet the goals (2.00x to 2.00x of tcmu-runner, 1.00x to 1.00x of c-minimal).',
    );
  });

  it('says which rows cannot be assessed', () => {
    const open = buildRows({ 'tcmu-runner': all['tcmu-runner'], tcmufile: report('tcmufile', flat(2000)) });
    expect(formatVerdict(open)).toBe(
      '2 of 2 rows meet the goals (2.00x to 2.00x of tcmu-runner). Not assessed (a reference has no result): ' +
        '4k-randread-qd1, 4k-randwrite-qd1, 128k-read-qd16, 128k-write-qd16.',
    );
    const none = buildRows({ tcmufile: all.tcmufile });
    expect(formatVerdict(none)).toMatch(/cannot be assessed: tcmu-runner or c-minimal has no result/);
  });

  it('compares tcmufile-rbd to tcmu-runner-rbd on its own, with its own sentence', () => {
    const rbdRows = buildRows({
      'tcmu-runner-rbd': report('tcmu-runner-rbd', flat(50)),
      'tcmufile-rbd': report('tcmufile-rbd', (job) => (job.name === '4k-randread-qd1' ? 40 : 75)),
    });
    expect(byName(rbdRows, '4k-randwrite-qd1').rbdVersusRunner).toBe(1.5);
    expect(byName(rbdRows, '4k-randread-qd1').rbdGoalMet).toBe(false);
    expect(byName(rbdRows, '4k-randwrite-qd1').goalMet).toBeUndefined(); // the file goals need the file rows
    expect(formatTable(rbdRows).split('\n')[0]).toBe(
      '| job | tcmu-runner-rbd IOPS | tcmu-runner-rbd MB/s | tcmufile-rbd IOPS | tcmufile-rbd MB/s | tcmufile-rbd vs tcmu-runner-rbd | goal |',
    );
    expect(formatVerdict(rbdRows)).toBe(
      "RBD: 5 of 6 rows at 1.0x tcmu-runner's rbd handler or better (0.80x to 1.50x); not met: 4k-randread-qd1 (0.80x).",
    );
    const lines = formatProvenance({
      'tcmufile-rbd': { ...report('tcmufile-rbd', flat(1)), ceph: 'ceph version 16.2.15' },
    });
    expect(lines.split('\n').at(-1)).toContain('- tcmufile-rbd: ');
    expect(lines).toContain('ceph version 16.2.15');
    expect(lines).not.toContain('tcmu-runner-rbd');
  });

  it('tells per backstore how many rounds, their spread per row and the host load', () => {
    const lines = formatProvenance(all).split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[2]).toBe(
      '- c-minimal: 2026-01-01T00:00:00.000Z, kernel 6.1.0-56-amd64, fio-3.33, median of 3 interleaved rounds, ' +
        'IOPS min-max per row 1900-2100 / 1900-2100 / 1900-2100 / 1900-2100 / 1900-2100 / 1900-2100, ' +
        'host load 0.0-0.5; 1.0-1.5; 2.0-2.5',
    );
    expect(lines[3]).toContain('IOPS min-max per row 1800-2000 / 1800-2000 / 400-600 / ');
    const one = formatProvenance({ fileio: report('fileio', flat(1)) }).split('\n');
    expect(one[0]).toBe(
      '- fileio: 2026-01-01T00:00:00.000Z, kernel 6.1.0-56-amd64, fio-3.33, one round, host load 0.0-0.5',
    );
    expect(one[1]).toBe('- tcmu-runner: no result');
  });

  it('puts the rounds, goals and table into the docs section', () => {
    const section = formatSection({
      reports: all,
      rows,
      date: '2026-01-02',
      runtimeSeconds: 10,
      environment: 'env',
    });
    expect(section).toContain('median of 3 interleaved rounds');
    expect(section).toContain('Goals (issue 8)');
    expect(section).toContain(formatTable(rows));
    expect(section).toContain(formatVerdict(rows));
  });
});

describe('replaceSection', () => {
  const section = formatSection({
    reports: {},
    rows: buildRows({}),
    date: '2026-01-01',
    runtimeSeconds: 10,
    environment: 'env',
  });

  it('creates the document when there is none', () => {
    const text = replaceSection(undefined, section);
    expect(text.startsWith('# Benchmarks\n\n## Kernel benchmark\n')).toBe(true);
    expect(text).toContain('### 2026-01-01');
  });

  it('replaces only our section, keeping the others before and after it', () => {
    const before =
      '# Benchmarks\n\n## @tcmu/scsi\n\nscsi numbers\n\n## Kernel benchmark\n\nold run\n\n## Later\n\nkeep me\n';
    const text = replaceSection(before, section);
    expect(text).toContain('## @tcmu/scsi\n\nscsi numbers\n\n## Kernel benchmark\n');
    expect(text).not.toContain('old run');
    expect(text.endsWith('\n\n## Later\n\nkeep me\n')).toBe(true);
    expect(replaceSection(text, section)).toBe(text); // idempotent
  });

  it('appends the section after other sections when it is missing', () => {
    const text = replaceSection('# Benchmarks\n\n## @tcmu/scsi\n\nscsi numbers\n', section);
    expect(text.startsWith('# Benchmarks\n\n## @tcmu/scsi\n\nscsi numbers\n\n## Kernel benchmark\n')).toBe(
      true,
    );
  });
});
