import { describe, expect, it } from 'vitest';
import { jobs } from './jobs.mjs';
import { buildRows, formatSection, formatTable, formatVerdict, replaceSection } from './report.mjs';

/** A backstore report whose every job has `iops` (MB/s follows from the block size). */
function report(backstore: string, iopsByJob: (job: (typeof jobs)[number]) => number) {
  return {
    backstore,
    date: '2026-01-01T00:00:00.000Z',
    kernel: '6.1.0-56-amd64',
    fio: 'fio-3.33',
    cpus: 2,
    jobs: jobs.map((job) => {
      const iops = iopsByJob(job);
      return { ...job, iops, bytesPerSecond: iops * (job.bs === '4k' ? 4096 : 131072) };
    }),
  };
}

describe('buildRows', () => {
  it('computes ratios to tcmu-runner and fileio, and checks the goals per row', () => {
    const rows = buildRows({
      fileio: report('fileio', () => 1000),
      'tcmu-runner': report('tcmu-runner', () => 800),
      // 4k random at 0.9x fileio (goal met); sequential at 0.5x tcmu-runner (goal missed)
      tcmufile: report('tcmufile', (job) => (job.random ? 900 : 400)),
    });
    expect(rows).toHaveLength(6);
    const random = rows.find((row) => row.job.name === '4k-randread-qd16')!;
    expect(random.versusRunner).toBeCloseTo(1.125);
    expect(random.versusFileio).toBeCloseTo(0.9);
    expect(random.goalMet).toBe(true);
    const sequential = rows.find((row) => row.job.name === '128k-read-qd16')!;
    expect(sequential.versusRunner).toBeCloseTo(0.5);
    expect(sequential.goalMet).toBe(false);
  });

  it('fails a 4k random row below 0.85x fileio even when it beats tcmu-runner', () => {
    const rows = buildRows({
      fileio: report('fileio', () => 1000),
      'tcmu-runner': report('tcmu-runner', () => 500),
      tcmufile: report('tcmufile', () => 800),
    });
    expect(rows.filter((row) => row.job.random).every((row) => row.goalMet === false)).toBe(true);
    expect(rows.filter((row) => !row.job.random).every((row) => row.goalMet === true)).toBe(true);
  });

  it('leaves ratios and goals open when tcmufile or a reference is missing', () => {
    const rows = buildRows({
      fileio: report('fileio', () => 1000),
      'tcmu-runner': report('tcmu-runner', () => 500),
    });
    expect(rows.every((row) => row.versusRunner === undefined && row.goalMet === undefined)).toBe(true);
    expect(formatVerdict(rows)).toMatch(/no result yet/);
    expect(formatTable(rows)).toContain(
      '| 4k-randread-qd1 | 1000 | 4.1 | 500 | 2.0 | n/a | n/a | n/a | n/a | n/a |',
    );
  });
});

describe('formatting', () => {
  const rows = buildRows({
    fileio: report('fileio', () => 1000),
    'tcmu-runner': report('tcmu-runner', () => 1000),
    tcmufile: report('tcmufile', (job) => (job.name === '4k-randwrite-qd1' ? 500 : 1200)),
  });

  it('prints a Markdown table with every job and backstore', () => {
    const table = formatTable(rows).split('\n');
    expect(table[0]).toBe(
      '| job | fileio IOPS | fileio MB/s | tcmu-runner IOPS | tcmu-runner MB/s | tcmufile IOPS | tcmufile MB/s | vs tcmu-runner | vs fileio | goal |',
    );
    expect(table).toHaveLength(2 + jobs.length);
    expect(table).toContain(
      '| 128k-write-qd16 | 1000 | 131.1 | 1000 | 131.1 | 1200 | 157.3 | 1.20x | 1.20x | met |',
    );
    expect(table).toContain(
      '| 4k-randwrite-qd1 | 1000 | 4.1 | 1000 | 4.1 | 500 | 2.0 | 0.50x | 0.50x | not met |',
    );
  });

  it('sums up where we stand', () => {
    expect(formatVerdict(rows)).toBe(
      '5 of 6 rows meet the goals (0.50x to 1.20x of tcmu-runner); not met: 4k-randwrite-qd1.',
    );
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
