import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';
import { type BlockSize, checkDeviceSize, parseBlockSize, parseSize } from './size.js';

export interface IscsiPortal {
  host: string;
  port: number;
}

export interface ServeCommand {
  kind: 'serve';
  image: string;
  /** Bytes; when absent the image's own size is used. */
  size: number | undefined;
  name: string;
  blockSize: BlockSize;
  readOnly: boolean;
  /** Where the device node goes (`<dir>/<name>`). */
  dir: string;
  iscsi: IscsiPortal | undefined;
  queueDepth: number | undefined;
  /** How the image is read and written (see FileBackendOptions.io). */
  io: IoMode;
  /** attrib/cmd_time_out: how long a restart may take (seconds; 0 = forever). */
  commandTimeoutS: number | undefined;
  /** Serve the target of a symlinked IMAGE. */
  followSymlinks: boolean;
  /** Serve IMAGE's bytes even when it looks like qcow2/VMDK/VHD(X)/VDI. */
  raw: boolean;
}

/** `tcmufile stop NAME`: signal the serving process of NAME and wait for it. */
export interface StopCommand {
  kind: 'stop';
  name: string;
  /** Leave the disk for the next `serve` (SIGUSR2) instead of removing it (SIGTERM). */
  keep: boolean;
  timeoutS: number;
}

export type Command =
  | ServeCommand
  | { kind: 'doctor' }
  | { kind: 'list'; json: boolean }
  | { kind: 'cleanup'; dryRun: boolean }
  | StopCommand
  | { kind: 'help'; topic: CommandName | undefined }
  | { kind: 'version' };

export const commandNames = ['serve', 'stop', 'doctor', 'list', 'cleanup'] as const;
export type CommandName = (typeof commandNames)[number];

export const defaultNodeDir = '/dev/tcmufile';
export const defaultIscsiPort = 3260;

export const usage: Record<CommandName | 'main', string> = {
  main: `Usage: tcmufile <command> [options]

Serve an image file as a Linux block device through the kernel's TCMU (target_core_user).

Commands:
  serve IMAGE   serve IMAGE as a disk until SIGINT/SIGTERM (SIGUSR2: leave it for the next serve)
  stop NAME     stop the serve of NAME; --keep leaves the disk for a restart
  doctor        check that this machine can host a TCMU device, and say how to fix it
  list          list the TCMU devices and targets in configfs (ours are marked)
  cleanup       remove the configfs objects a crashed tcmufile left behind

Run \`tcmufile <command> --help\` for a command's options.`,
  serve: `Usage: tcmufile serve IMAGE [options]

Serves IMAGE (a regular file) as a SCSI disk on the loopback fabric. Prints the
disk's path (/dev/sdX) on its own line on stdout once it is ready, then runs until
SIGINT or SIGTERM and removes everything it created. On SIGUSR2 (\`tcmufile stop
--keep\`) it finishes the commands in flight and exits leaving the disk in place:
the next \`serve\` of the same IMAGE and NAME takes it over (the same /dev/sdX; a
mounted filesystem stays mounted), as it does after a crash. Initiators wait
through the gap for up to --command-timeout seconds.

Options:
  -s, --size SIZE         disk size; creates a sparse IMAGE when it is missing
                          (512, 4K, 1M, 1G, 1T: powers of 1024). Default: IMAGE's size
  -n, --name NAME         volume name (default: IMAGE's file name without extension)
  -b, --block-size N      logical block size, 512 or 4096 (default 512)
  -r, --read-only         write-protect the disk
  -d, --dir DIR           directory for the device node DIR/NAME (default ${defaultNodeDir})
      --iscsi HOST[:PORT] also export the disk over iSCSI on this portal (default port ${defaultIscsiPort})
  -q, --queue-depth N     commands in flight at once (default: the device's, 128)
      --io native|sync|async
                          native (default): plain READ/WRITE are served inside the ring
                          addon, preadv/pwritev straight on the ring's memory; every
                          other command (and any READ/WRITE the emulation must see)
                          goes to the TypeScript emulation, which reads the image on
                          the main thread; sync: everything through the emulation, on
                          the main thread (a page-cache copy, cheapest for images in
                          memory or cache); async: through libuv's threadpool, for
                          slow storage
      --command-timeout S how long the kernel holds a command for this process before
                          failing it: the longest a restart may take (default 30; 0:
                          forever). Fixed when the disk is created
      --follow-symlinks   serve the target when IMAGE is a symbolic link (refused otherwise)
      --raw               serve IMAGE's bytes even when it is a qcow2, VMDK, VHD(X) or
                          VDI image (refused otherwise: its header would be the disk)
  -h, --help              this help`,
  stop: `Usage: tcmufile stop NAME [--keep] [--timeout S]

Stops the \`tcmufile serve\` serving NAME (found through its ownership marker) and
waits for it to exit. Without --keep it removes the disk (SIGTERM); with --keep it
leaves the disk, LUN and node for the next serve of the same image (SIGUSR2): an
upgrade is \`tcmufile stop NAME --keep\` and then \`tcmufile serve\` of the new version.

Options:
  --keep          leave the disk for the next serve
  --timeout S     how long to wait for the process to exit (default 30)`,
  doctor: `Usage: tcmufile doctor

Checks root, configfs, the target_core_user and tcm_loop modules and UIO, and
prints the command that fixes each failed check. Exits non-zero if one fails.`,
  list: `Usage: tcmufile list [--json]

Lists the TCMU backstores and loopback/iSCSI targets in configfs. Objects made
by tcmufile (or @tcmu/device) are marked, with the process that owns them.

Options:
  --json    print JSON instead of a table`,
  cleanup: `Usage: tcmufile cleanup [--dry-run]

Removes configfs objects made by tcmufile whose process is gone (after a crash
or kill -9). Objects of other programs and of running processes are left alone.

Options:
  --dry-run   only print what would be removed`,
};

/** Parses argv (without node and the script path) into a command, or throws a UsageError. */
export function parseCommandLine(argv: readonly string[]): Command {
  const [first, ...rest] = argv;
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    const topic = first === 'help' ? rest[0] : undefined;
    if (topic !== undefined && !isCommandName(topic)) throw new UsageError(`unknown command '${topic}'`);
    return { kind: 'help', topic };
  }
  if (first === '-V' || first === '--version' || first === 'version') return { kind: 'version' };
  if (!isCommandName(first)) {
    throw new UsageError(
      first.startsWith('-') ? `expected a command before '${first}'` : `unknown command '${first}'`,
    );
  }
  if (rest.includes('-h') || rest.includes('--help')) return { kind: 'help', topic: first };
  switch (first) {
    case 'serve':
      return parseServe(rest);
    case 'doctor':
      parse(first, rest, {});
      return { kind: 'doctor' };
    case 'list': {
      const { values } = parse(first, rest, { json: { type: 'boolean' } });
      return { kind: 'list', json: values.json === true };
    }
    case 'cleanup': {
      const { values } = parse(first, rest, { 'dry-run': { type: 'boolean' } });
      return { kind: 'cleanup', dryRun: values['dry-run'] === true };
    }
    case 'stop':
      return parseStop(rest);
  }
}

function parseStop(args: readonly string[]): StopCommand {
  const { values, positionals } = parse(
    'stop',
    args,
    { keep: { type: 'boolean' }, timeout: { type: 'string' } },
    1,
  );
  const name = positionals[0];
  if (name === undefined || name === '')
    throw new UsageError('stop needs a NAME', 'tcmufile stop disk0 --keep');
  checkVolumeName(name);
  const timeoutS = values.timeout === undefined ? 30 : Number(values.timeout);
  if (!Number.isInteger(timeoutS) || timeoutS < 1 || timeoutS > 3600) {
    throw new UsageError(
      `--timeout '${String(values.timeout)}' is not a whole number of seconds from 1 to 3600`,
    );
  }
  return { kind: 'stop', name, keep: values.keep === true, timeoutS };
}

function isCommandName(text: string): text is CommandName {
  return (commandNames as readonly string[]).includes(text);
}

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

function parse(command: CommandName, args: readonly string[], options: OptionSpec, positionals = 0) {
  let parsed: ReturnType<typeof parseArgs<{ options: OptionSpec; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    // node:util reports ERR_PARSE_ARGS_*; keep its wording, which names the option.
    const message = error instanceof Error ? error.message.split('\n')[0]! : String(error);
    throw new UsageError(message, `Run \`tcmufile ${command} --help\` for its options.`);
  }
  if (parsed.positionals.length > positionals) {
    throw new UsageError(`unexpected argument '${parsed.positionals[positionals]}' for ${command}`);
  }
  return parsed;
}

/**
 * parseArgs calls `--size -1G` ambiguous (the value looks like an option); join such a value to
 * its option so the size check can answer "must be positive" instead.
 */
function joinNegativeValues(args: readonly string[], options: OptionSpec): string[] {
  const takesValue = new Set<string>();
  for (const [name, spec] of Object.entries(options)) {
    if (spec.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (spec.short) takesValue.add(`-${spec.short}`);
  }
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (takesValue.has(arg) && next !== undefined && /^-\d/.test(next)) {
      joined.push(arg.startsWith('--') ? `${arg}=${next}` : `${arg}${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

function parseServe(args: readonly string[]): ServeCommand {
  const { values, positionals } = parse(
    'serve',
    args,
    {
      size: { type: 'string', short: 's' },
      name: { type: 'string', short: 'n' },
      'block-size': { type: 'string', short: 'b' },
      'read-only': { type: 'boolean', short: 'r' },
      dir: { type: 'string', short: 'd' },
      iscsi: { type: 'string' },
      'queue-depth': { type: 'string', short: 'q' },
      io: { type: 'string' },
      'command-timeout': { type: 'string' },
      'follow-symlinks': { type: 'boolean' },
      raw: { type: 'boolean' },
    },
    1,
  );
  const image = positionals[0];
  if (image === undefined || image === '') {
    throw new UsageError('serve needs an IMAGE', 'tcmufile serve disk.img --size 1G');
  }
  const blockSize = values['block-size'] === undefined ? 512 : parseBlockSize(String(values['block-size']));
  let size: number | undefined;
  if (values.size !== undefined) {
    size = parseSize(String(values.size), '--size');
    checkDeviceSize(size, blockSize, '--size');
  }
  const name = values.name === undefined ? nameFromImage(image) : String(values.name);
  checkVolumeName(name);
  const dir = values.dir === undefined ? defaultNodeDir : String(values.dir);
  if (dir === '') throw new UsageError('--dir must not be empty');
  return {
    kind: 'serve',
    image,
    size,
    name,
    blockSize,
    readOnly: values['read-only'] === true,
    dir,
    iscsi: values.iscsi === undefined ? undefined : parsePortal(String(values.iscsi)),
    queueDepth:
      values['queue-depth'] === undefined ? undefined : parseQueueDepth(String(values['queue-depth'])),
    io: parseIoMode(values.io === undefined ? 'native' : String(values.io)),
    commandTimeoutS:
      values['command-timeout'] === undefined
        ? undefined
        : parseCommandTimeout(String(values['command-timeout'])),
    followSymlinks: values['follow-symlinks'] === true,
    raw: values.raw === true,
  };
}

function parseCommandTimeout(text: string): number {
  const seconds = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds > 86_400) {
    throw new UsageError(`--command-timeout '${text}' is not a whole number of seconds from 0 to 86400`);
  }
  return seconds;
}

/** Volume names become configfs directory names and a node under --dir: keep them plain. */
const volumeNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const maxVolumeNameLength = 64;

export function checkVolumeName(name: string): void {
  if (name.length > maxVolumeNameLength) {
    throw new UsageError(`volume name '${name}' is longer than ${maxVolumeNameLength} characters`);
  }
  if (!volumeNamePattern.test(name)) {
    throw new UsageError(
      `volume name '${name}' is not valid`,
      'Use letters, digits, dot, dash and underscore, starting with a letter or digit (--name vol0).',
    );
  }
}

/** "/srv/My Disk.img" → "My-Disk"; falls back to "tcmufile" when nothing usable is left. */
export function nameFromImage(image: string): string {
  const file = basename(image);
  const stem = file.includes('.', 1) ? file.slice(0, file.lastIndexOf('.')) : file;
  const cleaned = stem
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, maxVolumeNameLength)
    .replace(/[-.]+$/, '');
  return cleaned === '' ? 'tcmufile' : cleaned;
}

/** "127.0.0.1:3260", "127.0.0.1", "[::1]:3260" or "[::1]". */
export function parsePortal(text: string): IscsiPortal {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+))(?::(\d+))?$/.exec(text);
  if (!match) throw new UsageError(`--iscsi '${text}' is not HOST[:PORT]`, 'e.g. --iscsi 127.0.0.1:3260');
  const host = match[1] ?? match[2]!;
  const port = match[3] === undefined ? defaultIscsiPort : Number(match[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`--iscsi port must be 1..65535, got '${match[3]}'`);
  }
  return { host, port };
}

/** How the image is read and written: see `--io` in the usage. */
export type IoMode = 'native' | 'sync' | 'async';

function parseIoMode(text: string): IoMode {
  if (text !== 'native' && text !== 'sync' && text !== 'async') {
    throw new UsageError(`--io must be native, sync or async, got '${text}'`);
  }
  return text;
}

function parseQueueDepth(text: string): number {
  const depth = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(depth) || depth < 1 || depth > 1024) {
    throw new UsageError(`--queue-depth must be a whole number from 1 to 1024, got '${text}'`);
  }
  return depth;
}
