import { describe, expect, it } from 'vitest';
import { nameFromImage, parseCommandLine, parsePortal, type ServeCommand, usage } from './args.js';
import { UsageError } from './errors.js';

function serveOf(argv: string[]): ServeCommand {
  const command = parseCommandLine(['serve', ...argv]);
  if (command.kind !== 'serve') throw new Error(`expected serve, got ${command.kind}`);
  return command;
}

describe('parseCommandLine', () => {
  it('serve with defaults', () => {
    expect(serveOf(['/srv/disk.img'])).toEqual({
      kind: 'serve',
      image: '/srv/disk.img',
      size: undefined,
      name: 'disk',
      blockSize: 512,
      readOnly: false,
      dir: '/dev/tcmufile',
      iscsi: undefined,
      queueDepth: undefined,
      io: 'native',
      commandTimeoutS: undefined,
      followSymlinks: false,
      raw: false,
    });
  });

  it('serve with every option, long and short', () => {
    const long = serveOf([
      'a.img',
      '--size',
      '1G',
      '--name',
      'vol0',
      '--block-size',
      '4096',
      '--read-only',
      '--dir',
      '/run/disks',
      '--iscsi',
      '127.0.0.1:3261',
      '--queue-depth',
      '32',
      '--io',
      'async',
      '--command-timeout',
      '120',
      '--follow-symlinks',
      '--raw',
    ]);
    expect(long).toEqual({
      kind: 'serve',
      image: 'a.img',
      size: 1 << 30,
      name: 'vol0',
      blockSize: 4096,
      readOnly: true,
      dir: '/run/disks',
      iscsi: { host: '127.0.0.1', port: 3261 },
      queueDepth: 32,
      io: 'async',
      commandTimeoutS: 120,
      followSymlinks: true,
      raw: true,
    });
    const short = serveOf([
      'a.img',
      '-s',
      '1G',
      '-n',
      'vol0',
      '-b',
      '4K',
      '-r',
      '-d',
      '/run/disks',
      '-q',
      '32',
    ]);
    expect(short).toMatchObject({
      size: 1 << 30,
      name: 'vol0',
      blockSize: 4096,
      readOnly: true,
      queueDepth: 32,
    });
    expect(serveOf(['--size=4M', 'b.img']).size).toBe(4 << 20);
  });

  it('--iscsi without a port uses 3260', () => {
    expect(serveOf(['a.img', '--iscsi', '127.0.0.1']).iscsi).toEqual({ host: '127.0.0.1', port: 3260 });
  });

  it.each([
    [['serve'], /needs an IMAGE/],
    [['serve', 'a.img', 'b.img'], /unexpected argument 'b.img'/],
    [['serve', 'a.img', '--bogus'], /bogus/],
    [['serve', 'a.img', '--size'], /size/],
    [['serve', 'a.img', '--size', '0'], /greater than zero/],
    [['serve', 'a.img', '--size', '-1G'], /must be positive/],
    [['serve', 'a.img', '-s', '-4K'], /must be positive/],
    [['serve', 'a.img', '--size', '1000'], /not a multiple of the 512-byte block size/],
    [['serve', 'a.img', '--size', '6K', '-b', '4096'], /not a multiple of the 4096-byte block size/],
    [['serve', 'a.img', '-b', '1024'], /512 or 4096/],
    [['serve', 'a.img', '--name', 'bad/name'], /not valid/],
    [['serve', 'a.img', '--name=-dash'], /not valid/],
    [['serve', 'a.img', '--name', 'x'.repeat(65)], /longer than 64/],
    [['serve', 'a.img', '--dir', ''], /--dir/],
    [['serve', 'a.img', '--iscsi', '1.2.3.4:0'], /port must be/],
    [['serve', 'a.img', '--iscsi', 'a b'], /HOST\[:PORT\]/],
    [['serve', 'a.img', '-q', '0'], /queue-depth/],
    [['serve', 'a.img', '--io', 'direct'], /--io must be native, sync or async/],
    [['serve', 'a.img', '-q', '2x'], /queue-depth/],
    [['serve', 'a.img', '--command-timeout', '1.5'], /--command-timeout '1.5'/],
    [['serve', 'a.img', '--command-timeout', '86401'], /from 0 to 86400/],
    [['stop'], /stop needs a NAME/],
    [['stop', 'a/b'], /not valid/],
    [['stop', 'vol0', '--timeout', '0'], /--timeout '0'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['--size', '1G'], /expected a command before '--size'/],
    [['list', 'extra'], /unexpected argument/],
    [['doctor', '--json'], /json/],
    [['help', 'nope'], /unknown command 'nope'/],
  ])('%j is a usage error (%s)', (argv, message) => {
    expect(() => parseCommandLine(argv)).toThrow(UsageError);
    expect(() => parseCommandLine(argv)).toThrow(message);
  });

  it('doctor, list, cleanup', () => {
    expect(parseCommandLine(['doctor'])).toEqual({ kind: 'doctor' });
    expect(parseCommandLine(['list'])).toEqual({ kind: 'list', json: false });
    expect(parseCommandLine(['list', '--json'])).toEqual({ kind: 'list', json: true });
    expect(parseCommandLine(['cleanup'])).toEqual({ kind: 'cleanup', dryRun: false });
    expect(parseCommandLine(['cleanup', '--dry-run'])).toEqual({ kind: 'cleanup', dryRun: true });
  });

  it('stop, with --keep and --timeout', () => {
    expect(parseCommandLine(['stop', 'vol0'])).toEqual({
      kind: 'stop',
      name: 'vol0',
      keep: false,
      timeoutS: 30,
    });
    expect(parseCommandLine(['stop', 'vol0', '--keep', '--timeout', '5'])).toEqual({
      kind: 'stop',
      name: 'vol0',
      keep: true,
      timeoutS: 5,
    });
  });

  it('help and version', () => {
    expect(parseCommandLine([])).toEqual({ kind: 'help', topic: undefined });
    expect(parseCommandLine(['--help'])).toEqual({ kind: 'help', topic: undefined });
    expect(parseCommandLine(['help', 'serve'])).toEqual({ kind: 'help', topic: 'serve' });
    expect(parseCommandLine(['serve', '--help'])).toEqual({ kind: 'help', topic: 'serve' });
    expect(parseCommandLine(['cleanup', '-h'])).toEqual({ kind: 'help', topic: 'cleanup' });
    expect(parseCommandLine(['--version'])).toEqual({ kind: 'version' });
    expect(parseCommandLine(['-V'])).toEqual({ kind: 'version' });
  });

  it('has usage text for every command, naming every serve option', () => {
    for (const option of [
      '--size',
      '--name',
      '--block-size',
      '--read-only',
      '--dir',
      '--iscsi',
      '--queue-depth',
    ]) {
      expect(usage.serve).toContain(option);
    }
    expect(usage.main).toMatch(/serve[\s\S]*doctor[\s\S]*list[\s\S]*cleanup/);
  });
});

describe('nameFromImage', () => {
  it.each([
    ['/srv/disk.img', 'disk'],
    ['disk', 'disk'],
    ['/a/b/vm-01.qcow.raw', 'vm-01.qcow'],
    ['My Disk (1).img', 'My-Disk-1'],
    ['.hidden', '.hidden'.slice(1)],
    ['___.img', 'tcmufile'],
    [`${'a'.repeat(80)}.img`, 'a'.repeat(64)],
  ])('%s → %s', (image, name) => {
    expect(nameFromImage(image)).toBe(name);
  });
});

describe('parsePortal', () => {
  it.each([
    ['127.0.0.1:3260', { host: '127.0.0.1', port: 3260 }],
    ['10.0.0.1', { host: '10.0.0.1', port: 3260 }],
    ['[::1]:3261', { host: '::1', port: 3261 }],
    ['[fe80::1]', { host: 'fe80::1', port: 3260 }],
    ['localhost:860', { host: 'localhost', port: 860 }],
  ])('%s', (text, portal) => {
    expect(parsePortal(text)).toEqual(portal);
  });
  it.each(['::1', ':3260', '1.2.3.4:70000', '[::1]:', ''])('rejects %j', (text) => {
    expect(() => parsePortal(text)).toThrow(UsageError);
  });
});
