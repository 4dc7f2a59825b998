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
    expect(io.out).toMatch(/^Usage: tcmufile serve IMAGE/);
  });

  it('prints the package version', async () => {
    const io = capture();
    expect(await main(['--version'], io)).toBe(0);
    expect(io.out).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('answers a bad command line on stderr with exit 64 and touches nothing', async () => {
    const cases = [
      ['frobnicate'],
      ['serve'],
      ['serve', 'x.img', '--size', '0'],
      ['serve', 'x.img', '--size', '-1G'],
      ['serve', 'x.img', '--size', '1000', '--block-size', '512'],
      ['serve', 'x.img', '--block-size', '1024'],
      ['list', '--nope'],
    ];
    for (const argv of cases) {
      const io = capture();
      expect(await main(argv, io)).toBe(ExitCode.usage);
      expect(io.out).toBe('');
      expect(io.err).toMatch(/^tcmufile: .+\n {2}fix: /);
    }
  });
});
