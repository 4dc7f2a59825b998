import { describe, expect, it } from 'vitest';
import {
  type CommandName,
  commandNames,
  commands,
  mainOptions,
  nameFromImage,
  parseCommandLine,
  parsePortal,
  type ServeCommand,
  usage,
} from './args.js';
import { UsageError } from './errors.js';
import type { Operand } from './options.js';

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
      thirdPartyCopy: true,
      controlDir: '/run/tcmufile',
      logLevel: 'info',
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
      '--iscsi-initiator',
      'iqn.1994-05.com.redhat:a,iqn.1994-05.com.redhat:b',
      '--chap-file',
      '/etc/chap.json',
      '--queue-depth',
      '32',
      '--io',
      'async',
      '--command-timeout',
      '120',
      '--follow-symlinks',
      '--raw',
      '--no-third-party-copy',
      '--control-dir',
      '/tmp/control',
      '--metrics',
      '127.0.0.1:9464',
      '--run',
      'true',
      '--pid-file',
      '/run/a.pid',
      '--log-level',
      'debug',
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
      iscsiAccess: {
        initiators: ['iqn.1994-05.com.redhat:a', 'iqn.1994-05.com.redhat:b'],
        chapFile: '/etc/chap.json',
        insecureDemoMode: false,
      },
      queueDepth: 32,
      io: 'async',
      commandTimeoutS: 120,
      followSymlinks: true,
      raw: true,
      thirdPartyCopy: false,
      controlDir: '/tmp/control',
      metrics: { host: '127.0.0.1', port: 9464 },
      run: 'true',
      pidFile: '/run/a.pid',
      logLevel: 'debug',
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

  it('demo mode off a loopback portal only with --insecure-demo-mode; 127.0.0.0/8 and ::1 need none', () => {
    expect(serveOf(['a.img', '--iscsi', '192.0.2.1', '--insecure-demo-mode']).iscsiAccess).toEqual({
      initiators: [],
      chapFile: undefined,
      insecureDemoMode: true,
    });
    for (const portal of ['127.0.0.1', '127.8.9.10:3261', '[::1]:3260']) {
      expect(serveOf(['a.img', '--iscsi', portal]).iscsiAccess?.initiators).toEqual([]);
    }
    expect(
      serveOf(['a.img', '--iscsi', '192.0.2.1', '--iscsi-initiator', 'iqn.1994-05.com.redhat:c']).iscsiAccess
        ?.initiators,
    ).toEqual(['iqn.1994-05.com.redhat:c']);
  });

  it('takes no secret on the command line: no option of any command carries a CHAP user or password', () => {
    for (const name of commandNames) {
      for (const [option, spec] of Object.entries(commands[name].options)) {
        if (spec.kind === 'flag') continue;
        expect(option, `${name} --${option}`).not.toMatch(/pass|secret|user|chap-(?!file$)/);
      }
    }
    for (const secret of ['--chap-password', '--chap-user', '--password', '--mutual-password']) {
      expect(() => parseCommandLine(['serve', 'a.img', '--iscsi', '127.0.0.1', secret, 'x'])).toThrow(
        /^unknown option/,
      );
    }
  });

  it('--iscsi without a port uses 3260', () => {
    expect(serveOf(['a.img', '--iscsi', '127.0.0.1']).iscsi).toEqual({ host: '127.0.0.1', port: 3260 });
  });

  it.each([
    [['serve'], /no IMAGE given/],
    [['serve', 'a.img', 'b.img'], /unexpected argument 'b.img'/],
    [['serve', 'a.img', '--bogus'], /^unknown option --bogus$/],
    [['serve', 'a.img', '--sise', '1G'], /^unknown option --sise \(did you mean --size\?\)$/],
    [['serve', 'a.img', '-x'], /^unknown option -x$/],
    [['serve', 'a.img', '--size'], /^--size needs a value \(SIZE\)$/],
    [['serve', 'a.img', '--name', '--raw'], /^--name needs a value \(NAME\) before --raw$/],
    [['serve', 'a.img', '--raw=yes'], /^--raw takes no value, got 'yes'$/],
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
    [
      ['serve', 'a.img', '--iscsi', '192.0.2.1'],
      /^--iscsi 192\.0\.2\.1 without --iscsi-initiator would let any initiator on the network in \(demo mode\)$/,
    ],
    [['serve', 'a.img', '--iscsi', '[::2]:3260'], /demo mode/],
    [
      ['serve', 'a.img', '--iscsi-initiator', 'iqn.1994-05.com.redhat:c'],
      /^--iscsi-initiator needs --iscsi$/,
    ],
    [['serve', 'a.img', '--insecure-demo-mode'], /^--insecure-demo-mode needs --iscsi$/],
    [
      ['serve', 'a.img', '--iscsi', '127.0.0.1', '--chap-file', 'c.json'],
      /--chap-file needs --iscsi-initiator/,
    ],
    [['serve', 'a.img', '--iscsi', '127.0.0.1', '--iscsi-initiator', 'IQN.1994-05.com.x'], /lower case/],
    [
      ['serve', 'a.img', '--iscsi', '127.0.0.1', '--iscsi-initiator', 'iqn.1994-05.com.x,iqn.1994-05.com.x'],
      /twice/,
    ],
    [['serve', 'a.img', '--config', 'disks.json'], /^IMAGE 'a.img' does not go with --config$/],
    [['serve', '--config', 'disks.json', '--size', '1G'], /^--size does not go with --config$/],
    [['serve', 'a.img', '--io', 'direct'], /--io must be native, sync or async/],
    [['serve', 'a.img', '-q', '2x'], /queue-depth/],
    [['serve', 'a.img', '--command-timeout', '1.5'], /--command-timeout '1.5'/],
    [['serve', 'a.img', '--command-timeout', '86401'], /from 0 to 86400/],
    [['stop'], /no NAME given/],
    [['stop', 'a/b'], /not valid/],
    [['stop', 'vol0', '--timeout', '0'], /--timeout '0'/],
    [['frobnicate'], /^unknown command 'frobnicate'$/],
    [['serv', 'a.img'], /^unknown command 'serv' \(did you mean serve\?\)$/],
    [['--size', '1G'], /expected a command before '--size'/],
    [['list', 'extra'], /unexpected argument/],
    [['doctor', '--json'], /^unknown option --json$/],
    [['list', '--jsno'], /did you mean --json\?/],
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
      controlDir: '/run/tcmufile',
    });
    expect(parseCommandLine(['stop', 'vol0', '--keep', '--timeout', '5'])).toEqual({
      kind: 'stop',
      name: 'vol0',
      keep: true,
      timeoutS: 5,
      controlDir: '/run/tcmufile',
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

  it('tells which command a usage error belongs to', () => {
    const commandOf = (argv: string[]) => {
      try {
        parseCommandLine(argv);
      } catch (error) {
        return { command: (error as UsageError).command, fix: (error as UsageError).fix };
      }
    };
    expect(commandOf(['serve', 'a.img', '--size', '0'])).toEqual({
      command: 'serve',
      fix: 'see tcmufile serve --help',
    });
    expect(commandOf(['stop'])).toEqual({ command: 'stop', fix: 'e.g. tcmufile stop disk0 --keep' });
    expect(commandOf(['frobnicate'])).toEqual({ command: undefined, fix: 'see tcmufile --help' });
  });

  it('reads -h and --help only before --; after it they are operands', () => {
    expect(parseCommandLine(['serve', '--bogus', '-h'])).toEqual({ kind: 'help', topic: 'serve' });
    expect(serveOf(['--', '--help']).image).toBe('--help');
    expect(serveOf(['--', '-weird.img']).name).toBe('weird');
  });
});

/** The options section of a help text: each label's short and long name, in order. */
function helpLabels(text: string): Array<{ short: string | undefined; long: string; line: string }> {
  const section = text.split('\nOptions:\n')[1] ?? '';
  return section
    .split('\n\n')[0]!
    .split('\n')
    .filter((line) => !/^ {26}\S/.test(line)) // a help text's next line
    .map((line) => {
      const match = /^ {2}(?:-(\w), | {4})--([\w-]+)/.exec(line);
      if (!match) throw new Error(`not an option label: ${line}`);
      return { short: match[1], long: match[2]!, line };
    });
}

/** Flags a text mentions, outside the `tcmufile <other command> ...` snippets it quotes. */
function flagsMentioned(
  text: string,
  command: CommandName,
): { own: string[]; quoted: Array<[CommandName, string]> } {
  const quoted: Array<[CommandName, string]> = [];
  const rest = text.replace(/`tcmufile (\w+)([^`]*)`/g, (snippet, other: CommandName, args: string) => {
    if (other === command) return snippet;
    for (const match of args.matchAll(/--([\w-]+)/g)) quoted.push([other, match[1]!]);
    return '';
  });
  return { own: [...rest.matchAll(/(?<![\w-])--([a-z][\w-]*)/g)].map((match) => match[1]!), quoted };
}

describe('one option table per command drives its parser and its help', () => {
  /** A valid command line's operands: the operand names lowered (an image path, a volume name), a size. */
  const operandsOf = (name: CommandName, option?: string) =>
    commands[name].operands.map((operand) =>
      operand.name === 'SIZE'
        ? '1G'
        : operand.name === 'IMAGE' && (name === 'doctor' || rbdOnly.has(option ?? ''))
          ? 'rbd:pool/image'
          : operand.name.toLowerCase(),
    );
  /** Options for an rbd: IMAGE only (doctor's IMAGE is always one). */
  const rbdOnly = new Set(['ceph-conf', 'id', 'keyring']);
  const labelOf = (operand: Operand) => (operand.optional ? `[${operand.name}]` : operand.name);

  /** Options that need another: given with it (which alone parses to `plain`'s shape plus it). */
  const companions: Record<string, string[]> = {
    'iscsi-initiator': ['--iscsi', '127.0.0.1'],
    'chap-file': ['--iscsi', '127.0.0.1', '--iscsi-initiator', 'iqn.1994-05.com.redhat:client'],
    'insecure-demo-mode': ['--iscsi', '127.0.0.1'],
  };

  it.each(
    commandNames,
  )('%s: every option of its table parses, long and short, and changes the command', (name) => {
    const operands = operandsOf(name);
    const plain = parseCommandLine([name, ...operands]);
    expect(plain.kind).toBe(name);
    for (const [option, spec] of Object.entries(commands[name].options)) {
      if (option === 'help') {
        expect(parseCommandLine([name, ...operands, '--help'])).toEqual({ kind: 'help', topic: name });
        expect(parseCommandLine([name, ...operands, `-${spec.short}`])).toEqual({
          kind: 'help',
          topic: name,
        });
        continue;
      }
      const value = spec.kind === 'flag' ? [] : [spec.example];
      if (option === 'config') {
        // It replaces IMAGE.
        expect(parseCommandLine([name, `--${option}`, ...value])).toEqual({
          kind: 'serve-config',
          config: value[0],
        });
        continue;
      }
      const base = [name, ...operandsOf(name, option), ...(companions[option] ?? [])];
      const parsed = parseCommandLine([...base, `--${option}`, ...value]);
      // The example reaches the command: an option the build step ignored would fail here.
      expect(parsed, `--${option}`).not.toEqual(parseCommandLine(base));
      if (spec.short !== undefined) {
        expect(parseCommandLine([...base, `-${spec.short}`, ...value])).toEqual(parsed);
      }
    }
  });

  it.each(commandNames)('%s: its help lists every option of its table and nothing else', (name) => {
    const table = commands[name].options;
    const labels = helpLabels(usage[name]);
    expect(labels.map((label) => label.long)).toEqual(Object.keys(table));
    for (const { short, long, line } of labels) {
      const spec = table[long]!;
      expect(short, line).toBe(spec.short);
      if (spec.kind === 'value') expect(line).toContain(`--${long} ${spec.value}`);
    }
    expect(usage[name]).toMatch(
      new RegExp(
        `^Usage: tcmufile ${name}${commands[name].operands
          .map((o) => ` ${labelOf(o).replace(/[[\]]/g, '\\$&')}`)
          .join('')} \\[options\\]\n`,
      ),
    );
  });

  it.each(
    commandNames,
  )('%s: every flag its help text mentions is one its parser (or the quoted command’s) accepts', (name) => {
    const { own, quoted } = flagsMentioned(usage[name], name);
    for (const flag of own) expect(Object.keys(commands[name].options), `--${flag}`).toContain(flag);
    for (const [other, flag] of quoted)
      expect(Object.keys(commands[other].options), `${other} --${flag}`).toContain(flag);
  });

  it('the main help lists every command, its operands and summary, and the top-level options', () => {
    for (const name of commandNames) {
      const synopsis = [name, ...commands[name].operands.map(labelOf)].join(' ').replace(/[[\]]/g, '\\$&');
      expect(usage.main).toMatch(new RegExp(`\\n  ${synopsis} +${commands[name].summary.split(' ')[0]}`));
    }
    const labels = helpLabels(usage.main);
    expect(labels.map((label) => label.long)).toEqual(Object.keys(mainOptions));
    expect(parseCommandLine([`--${labels[0]!.long}`])).toEqual({ kind: 'help', topic: undefined });
    expect(parseCommandLine([`-${labels[0]!.short}`])).toEqual({ kind: 'help', topic: undefined });
    expect(parseCommandLine([`--${labels[1]!.long}`])).toEqual({ kind: 'version' });
    expect(parseCommandLine([`-${labels[1]!.short}`])).toEqual({ kind: 'version' });
  });

  it('help fits 80 columns', () => {
    for (const text of Object.values(usage)) {
      for (const line of text.split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
    }
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
