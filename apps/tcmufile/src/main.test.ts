import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './errors.js';
import { main, type ProcessIo } from './main.js';

function capture(tty = false): ProcessIo & { out: string; err: string } {
  const io = {
    out: '',
    err: '',
    stderrIsTty: tty,
    writeOut(text: string) {
      io.out += text;
    },
    writeErr(text: string) {
      io.err += text;
    },
  };
  return io;
}

describe('main', () => {
  it('serve --config with a bad file: every problem by JSON path, exit 64, before any system check', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tcmufile-main-'));
    try {
      const config = join(dir, 'disks.json');
      await writeFile(
        config,
        JSON.stringify({ disks: [{ name: 'a', image: 'a.img', size: 'big' }, { name: 'b' }] }),
      );
      const io = capture(true);
      expect(await main(['serve', '--config', config], io)).toBe(ExitCode.usage);
      expect(io.err).toBe(
        `\r\x1b[Ktcmufile: ${config}: disks[1].image: is required\n` +
          '  fix: correct the config file (schema: apps/tcmufile/schema/config.schema.json, docs/config.md)\n',
      );
      expect(io.out).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prints the usage for no arguments and for --help, exit 0', async () => {
    for (const argv of [[], ['--help'], ['help']]) {
      const io = capture();
      expect(await main(argv, io)).toBe(0);
      expect(io.out).toMatch(/^Usage: tcmufile <command>/);
      expect(io.err).toBe('');
    }
  });

  it('prints a command usage', async () => {
    const io = capture();
    expect(await main(['serve', '--help'], io)).toBe(0);
    expect(io.out).toMatch(/^Usage: tcmufile serve \[IMAGE\]/);
  });

  it('prints the package version', async () => {
    const io = capture();
    expect(await main(['--version'], io)).toBe(0);
    expect(io.out).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('answers a bad command line with one line on stderr, what is wrong and what to do, exit 64', async () => {
    const cases = [
      ['frobnicate'],
      ['serve'],
      ['serve', 'x.img', '--sise', '1G'],
      ['serve', 'x.img', '--size'],
      ['serve', 'x.img', '--size', '0'],
      ['serve', 'x.img', '--size', '-1G'],
      ['serve', 'x.img', '--size', '1000', '--block-size', '512'],
      ['serve', 'x.img', '--block-size', '1024'],
      ['serve', 'x.img', '--name', 'a/b'],
      ['serve', 'x.img', '--io', 'direct'],
      ['serve', 'x.img', '--iscsi', '192.0.2.1'],
      ['serve', 'x.img', '--chap-password', 'secret'],
      ['serve', '--config', 'disks.json', 'x.img'],
      ['stop', 'vol0', '--timeout', 'soon'],
      ['list', '--nope'],
      ['doctor', 'now'],
    ];
    for (const argv of cases) {
      const io = capture();
      expect(await main(argv, io)).toBe(ExitCode.usage);
      expect(io.out).toBe('');
      const command = argv[0] === 'frobnicate' ? '' : ` ${argv[0]}`;
      expect(io.err).toMatch(
        new RegExp(`^tcmufile${command}: [^\n]+; (see tcmufile${command} --help|[^\n]+)\n$`),
      );
    }
  });

  it('names an unknown option, the one meant and where the options are', async () => {
    const io = capture();
    expect(await main(['serve', 'disk.img', '--sise', '1G'], io)).toBe(64);
    expect(io.err).toBe(
      'tcmufile serve: unknown option --sise (did you mean --size?); see tcmufile serve --help\n',
    );
    const missing = capture();
    expect(await main(['serve', 'disk.img', '--size'], missing)).toBe(64);
    expect(missing.err).toBe('tcmufile serve: --size needs a value (SIZE); e.g. --size 1G\n');
  });
});
