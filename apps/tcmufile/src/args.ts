import { basename } from 'node:path';
import { validateIqn } from '@tcmu/configfs';
import { UsageError } from './errors.js';
import { isRbdImage, parseRbdImage, type RbdImageRequest } from './rbd-image.js';
import { chapEnvironment as chapEnv, type IscsiAccessRequest, refusesDemoMode } from './iscsi-access.js';
import {
  asksForHelp,
  closest,
  columns,
  flag,
  formatOptions,
  helpFlag,
  helpWidth,
  type Operand,
  type OptionTable,
  type OptionValues,
  option,
  parseOptions,
  wrap,
} from './options.js';
import { defaultControlDir } from './control.js';
import type { LogLevel } from './log.js';
import { type BlockSize, checkDeviceSize, parseBlockSize, parseSize } from './size.js';

export interface IscsiPortal {
  host: string;
  port: number;
}

export interface ServeCommand {
  kind: 'serve';
  /** A file, or `rbd:POOL/IMAGE` (then `rbd` is set). */
  image: string;
  /** The Ceph RBD image and client when IMAGE is `rbd:...`. */
  rbd?: RbdImageRequest;
  /** Bytes; when absent the image's own size is used. */
  size: number | undefined;
  name: string;
  blockSize: BlockSize;
  readOnly: boolean;
  /** Where the device node goes (`<dir>/<name>`). */
  dir: string;
  iscsi: IscsiPortal | undefined;
  /** Initiator ACLs and CHAP of the iSCSI export (set with --iscsi). */
  iscsiAccess?: IscsiAccessRequest;
  queueDepth: number | undefined;
  /** How the image is read and written (see FileBackendOptions.io). */
  io: IoMode;
  /** attrib/cmd_time_out: how long a restart may take (seconds; 0 = forever). */
  commandTimeoutS: number | undefined;
  /** Serve the target of a symlinked IMAGE. */
  followSymlinks: boolean;
  /** Serve IMAGE's bytes even when it looks like qcow2/VMDK/VHD(X)/VDI. */
  raw: boolean;
  /** EXTENDED COPY between the disks this process serves (on unless --no-third-party-copy). */
  thirdPartyCopy: boolean;
  /** Directory of the control socket NAME.sock (status, resize); undefined: none. */
  controlDir?: string | undefined;
  /** Where Prometheus metrics are served (GET /metrics); undefined: nowhere. */
  metrics?: IscsiPortal | undefined;
  /** `--run CMD`: serve while CMD runs, exit with its status. */
  run?: string | undefined;
  /** Where the pid goes once the disk is ready. */
  pidFile?: string | undefined;
  logLevel?: LogLevel;
}

/** `tcmufile status [NAME]`: ask running serves for their state and activity. */
export interface StatusCommand {
  kind: 'status';
  name: string | undefined;
  json: boolean;
  controlDir: string;
}

/** `tcmufile resize NAME SIZE`: ask the serve of NAME to change the disk's size. */
export interface ResizeCommand {
  kind: 'resize';
  name: string;
  size: number;
  force: boolean;
  controlDir: string;
}

/** `tcmufile stop NAME`: signal the serving process of NAME and wait for it. */
export interface StopCommand {
  kind: 'stop';
  name: string;
  /** Leave the disk for the next `serve` (SIGUSR2) instead of removing it (SIGTERM). */
  keep: boolean;
  timeoutS: number;
  /** Where the serve's control socket is: a disk of a `serve --config` stops alone through it. */
  controlDir: string;
}

/** `tcmufile serve --config FILE`: every disk the file lists, reloaded on SIGHUP. */
export interface ServeConfigCommand {
  kind: 'serve-config';
  config: string;
}

export type Command =
  | ServeCommand
  | ServeConfigCommand
  | { kind: 'doctor'; rbd?: RbdImageRequest }
  | { kind: 'list'; json: boolean }
  | { kind: 'cleanup'; dryRun: boolean }
  | StopCommand
  | StatusCommand
  | ResizeCommand
  | { kind: 'help'; topic: CommandName | undefined }
  | { kind: 'version' };

export const commandNames = ['serve', 'stop', 'status', 'resize', 'doctor', 'list', 'cleanup'] as const;
export type CommandName = (typeof commandNames)[number];

export const defaultNodeDir = '/dev/tcmufile';
export const defaultIscsiPort = 3260;

/** How an rbd: image's cluster is reached (serve and doctor). */
const cephOptions = {
  'ceph-conf': option<string | undefined>({
    value: 'FILE',
    example: '/etc/ceph/ceph.conf',
    parse: (text) => text,
    default: undefined,
    defaultHelp: "librados's search: $CEPH_CONF, /etc/ceph/ceph.conf",
    help: 'rbd: images only: the Ceph configuration (mon_host, auth) of the cluster holding IMAGE',
  }),
  id: option<string | undefined>({
    value: 'NAME',
    example: 'tcmu',
    parse: (text) => checkCephUser(text),
    default: undefined,
    defaultHelp: 'admin',
    help: 'rbd: images only: the cephx user, without "client."',
  }),
  keyring: option<string | undefined>({
    value: 'FILE',
    example: '/etc/ceph/ceph.client.tcmu.keyring',
    parse: (text) => text,
    default: undefined,
    defaultHelp: "the conf's keyring, /etc/ceph/ceph.client.NAME.keyring",
    help: "rbd: images only: the keyring with the user's key",
  }),
};

const serveOptions = {
  size: option<number | undefined>({
    short: 's',
    value: 'SIZE',
    example: '1G',
    parse: (text, flag) => parseSize(text, flag),
    default: undefined,
    defaultHelp: "IMAGE's size",
    help:
      'disk size: 512, 4K, 1M, 1G, 1T (powers of 1024). Creates a sparse IMAGE when it is missing; ' +
      'a bigger IMAGE is served up to SIZE, a smaller one is refused with exit 65',
  }),
  name: option<string | undefined>({
    short: 'n',
    value: 'NAME',
    example: 'vol0',
    parse: (text) => checkVolumeName(text),
    default: undefined,
    defaultHelp: "IMAGE's file name without extension",
    help: 'volume name: the configfs backstore and the node DIR/NAME',
  }),
  'block-size': option<BlockSize>({
    short: 'b',
    value: 'N',
    example: '4096',
    parse: (text) => parseBlockSize(text),
    default: 512,
    help: 'logical block size, 512 or 4096',
  }),
  'read-only': flag({
    short: 'r',
    help: 'write-protect the disk (WP in MODE SENSE, writes fail with DATA PROTECT)',
  }),
  dir: option({
    short: 'd',
    value: 'DIR',
    example: '/run/disks',
    parse: (text) => {
      if (text === '') throw new UsageError('--dir must not be empty');
      return text;
    },
    default: defaultNodeDir,
    help: 'directory for the device node DIR/NAME',
  }),
  iscsi: option<IscsiPortal | undefined>({
    value: 'HOST[:PORT]',
    example: '127.0.0.1:3260',
    parse: (text) => parsePortal(text),
    default: undefined,
    help:
      `also export the disk over iSCSI on this portal, port ${defaultIscsiPort} by default: to the ` +
      '--iscsi-initiator names only, or to anyone (demo mode: loopback portals only, else with --insecure-demo-mode)',
  }),
  'iscsi-initiator': option<string[]>({
    value: 'IQN[,IQN...]',
    example: 'iqn.1994-05.com.redhat:client',
    parse: (text, flag) => parseInitiators(text, flag),
    default: [],
    defaultHelp: 'none: demo mode',
    help: 'initiator names allowed to log in over iSCSI (LIO node ACLs; demo mode is off)',
  }),
  'chap-file': option<string | undefined>({
    value: 'FILE',
    example: '/etc/tcmufile/chap.json',
    parse: (text) => text,
    default: undefined,
    defaultHelp: `$${chapEnv.userid} and $${chapEnv.password} when set`,
    help:
      'CHAP credentials for the --iscsi-initiator names: a JSON object {"userid", "password", and ' +
      'for mutual CHAP "mutualUserid", "mutualPassword"} readable by its owner only. Secrets are ' +
      `never taken from the command line; the environment's are $${chapEnv.userid}, ` +
      `$${chapEnv.password}, $${chapEnv.mutualUserid}, $${chapEnv.mutualPassword}`,
  }),
  'insecure-demo-mode': flag({
    help: 'allow demo mode (any initiator, no CHAP) on a portal other than 127.0.0.0/8 or ::1',
  }),
  config: option<string | undefined>({
    value: 'FILE',
    example: 'disks.json',
    parse: (text) => text,
    default: undefined,
    defaultHelp: 'none',
    help:
      'serve every disk FILE lists instead of IMAGE (JSON, or TOML if FILE ends in .toml; see ' +
      'docs/config.md); SIGHUP reloads it: ' +
      'new disks are added, removed or changed ones removed (and the changed ones added again)',
  }),
  'queue-depth': option<number | undefined>({
    short: 'q',
    value: 'N',
    example: '32',
    parse: (text, flag) => parseWholeNumber(text, flag, 1, 1024),
    default: undefined,
    defaultHelp: "the device's, 128",
    help: 'commands in flight at once',
  }),
  io: option<IoMode>({
    value: 'native|sync|async',
    example: 'sync',
    parse: (text) => parseIoMode(text),
    default: 'native',
    help:
      'native: plain READ/WRITE are served inside the ring addon, preadv/pwritev straight on the ' +
      "ring's memory; every other command (and any READ/WRITE the emulation must see: unit " +
      'attentions, FUA, COMPARE AND WRITE...) goes to the TypeScript emulation on the main thread. ' +
      'sync: everything through the emulation, pread/pwrite on the main thread (a page-cache copy, ' +
      "cheapest for images in memory or cache). async: through libuv's threadpool, so slow storage " +
      'never stalls other commands. fdatasync always runs on the threadpool',
  }),
  'command-timeout': option<number | undefined>({
    value: 'S',
    example: '120',
    parse: (text, flag) => parseWholeNumber(text, flag, 0, 86_400),
    default: undefined,
    defaultHelp: '30',
    help:
      'how long the kernel holds a command while no process serves the disk (a restart) before ' +
      'failing it; 0: forever. Fixed when the disk is created',
  }),
  'follow-symlinks': flag({
    help:
      'serve the target when IMAGE is a symbolic link; without it a symlinked IMAGE is refused (64), ' +
      'since the link could be pointed elsewhere under a running disk',
  }),
  raw: flag({
    help:
      "serve IMAGE's bytes even when it starts like a qcow2, VMDK, VHD(X) or VDI image; without it " +
      'such an image is refused (65) with the qemu-img convert command (its header would be the disk)',
  }),
  ...cephOptions,
  'no-third-party-copy': flag({
    help:
      'leave EXTENDED COPY and RECEIVE COPY RESULTS out; by default an initiator may copy between ' +
      'the disks of this process without moving the data through itself (LIO offers the same)',
  }),
  'control-dir': option({
    value: 'DIR',
    example: '/tmp/control',
    parse: (text) => nonEmpty(text, '--control-dir'),
    default: defaultControlDir,
    help: 'directory of the control socket DIR/NAME.sock (mode 0600) that `tcmufile status` and `tcmufile resize` talk to',
  }),
  metrics: option<IscsiPortal | undefined>({
    value: 'HOST:PORT',
    example: '127.0.0.1:9464',
    parse: (text) => parseMetricsAddress(text),
    default: undefined,
    help: 'serve Prometheus metrics (commands, bytes, latency histogram, errors, state) on http://HOST:PORT/metrics',
  }),
  run: option<string | undefined>({
    value: 'CMD',
    example: "'mkfs.ext4 $DISK'",
    parse: (text) => nonEmpty(text, '--run'),
    default: undefined,
    help:
      'once the disk is ready run CMD with /bin/sh -c, $DISK (/dev/sdX) and $NODE (DIR/NAME) in its ' +
      "environment; when it exits remove the disk and exit with CMD's status",
  }),
  'pid-file': option<string | undefined>({
    value: 'PATH',
    example: '/run/tcmufile/vol0.pid',
    parse: (text) => nonEmpty(text, '--pid-file'),
    default: undefined,
    help: 'write the process id to PATH once the disk is ready (systemd PIDFile=, scripts); removed on exit',
  }),
  'log-level': option<LogLevel>({
    value: 'LEVEL',
    example: 'debug',
    parse: (text) => parseLogLevel(text),
    default: 'info',
    help: 'debug, info, warn or error: the least severe records logged',
  }),
  help: helpFlag,
} satisfies OptionTable;

const controlDirOption = option({
  value: 'DIR',
  example: '/tmp/control',
  parse: (text) => nonEmpty(text, '--control-dir'),
  default: defaultControlDir,
  help: "directory of the serves' control sockets (serve --control-dir)",
});

const statusOptions = {
  json: flag({ help: 'print JSON (an array, one object per serve) instead of text' }),
  'control-dir': controlDirOption,
  help: helpFlag,
} satisfies OptionTable;

const resizeOptions = {
  force: flag({
    help: 'allow a shrink: the disk loses its end (the image keeps the bytes); shrink the filesystem first',
  }),
  'control-dir': controlDirOption,
  help: helpFlag,
} satisfies OptionTable;

const stopOptions = {
  keep: flag({ help: 'leave the disk for the next serve (SIGUSR2) instead of removing it (SIGTERM)' }),
  timeout: option({
    value: 'S',
    example: '60',
    parse: (text, flag) => parseWholeNumber(text, flag, 1, 3600),
    default: 30,
    help: 'how long to wait for the process to exit, in seconds',
  }),
  'control-dir': controlDirOption,
  help: helpFlag,
} satisfies OptionTable;

const listOptions = {
  json: flag({ help: 'print JSON instead of a table' }),
  help: helpFlag,
} satisfies OptionTable;

const cleanupOptions = {
  'dry-run': flag({ help: 'only print what would be removed' }),
  help: helpFlag,
} satisfies OptionTable;

/** A command: its table and operands drive its parser and its help. */
interface CommandSpec<T extends OptionTable> {
  /** One line for `tcmufile --help`. */
  readonly summary: string;
  readonly operands: readonly Operand[];
  /** Paragraphs (separated by a blank line) of its help, wrapped when printed. */
  readonly description: string;
  readonly options: T;
  readonly build: (values: OptionValues<T>, operands: readonly string[]) => Command;
}

/** A command spec with its value types erased, so specs of different tables share one record. */
export interface CommandDefinition {
  readonly summary: string;
  readonly operands: readonly Operand[];
  readonly description: string;
  readonly options: OptionTable;
  parse(args: readonly string[]): Command;
}

function defineCommand<T extends OptionTable>(spec: CommandSpec<T>): CommandDefinition {
  return {
    summary: spec.summary,
    operands: spec.operands,
    description: spec.description,
    options: spec.options,
    parse(args) {
      const { values, operands } = parseOptions(spec.options, args, spec.operands);
      return spec.build(values, operands);
    },
  };
}

export const commands: Readonly<Record<CommandName, CommandDefinition>> = {
  serve: defineCommand({
    summary: 'serve IMAGE as a disk until SIGINT/SIGTERM (SIGUSR2: leave it for the next serve)',
    operands: [{ name: 'IMAGE', example: 'tcmufile serve disk.img --size 1G', optional: true }],
    description:
      'Serves IMAGE (a regular file, or an RBD image) as a SCSI disk on the loopback fabric. Once the disk is ready ' +
      `it prints its device node DIR/NAME (${defaultNodeDir}/NAME by default: a block node with the ` +
      "disk's major:minor; the kernel's own /dev/sdX is in the log) on its own line on stdout, then " +
      'runs until SIGINT or SIGTERM and removes everything it created.\n\n' +
      'On SIGUSR2 (`tcmufile stop NAME --keep`) it finishes the commands in flight and exits leaving ' +
      'the disk in place: the next serve of the same IMAGE and NAME takes it over (the same ' +
      '/dev/sdX; a mounted filesystem stays mounted), as it does after a crash. Initiators wait ' +
      'through the gap for up to --command-timeout seconds.\n\n' +
      'IMAGE may be a Ceph RBD image, rbd:POOL/IMAGE (rbd:POOL/NAMESPACE/IMAGE, @SNAPSHOT for a ' +
      'read-only snapshot), reached with --ceph-conf, --id and --keyring (`tcmufile doctor ' +
      "rbd:POOL/IMAGE` checks them); the disk follows the image's size when `rbd resize` changes it.\n\n" +
      'With --config FILE instead of IMAGE it serves every disk FILE lists (docs/config.md) and ' +
      're-reads FILE on SIGHUP.',
    options: serveOptions,
    build: (values, [image]) => {
      if (values.config !== undefined) return configCommand(values, image);
      if (image === undefined) {
        throw new UsageError('no IMAGE given', {
          fix: 'e.g. tcmufile serve disk.img --size 1G, or tcmufile serve --config disks.json',
        });
      }
      const access = iscsiAccess(values, values.iscsi);
      const blockSize = values['block-size'];
      if (values.size !== undefined) checkDeviceSize(values.size, blockSize, '--size');
      const rbd = rbdRequest(values, image);
      return {
        kind: 'serve',
        image: image!,
        ...(rbd === undefined ? {} : { rbd }),
        size: values.size,
        name: values.name ?? nameFromImage(image!),
        blockSize,
        // A snapshot cannot be written.
        readOnly: values['read-only'] || rbd?.snapshot !== undefined,
        dir: values.dir,
        iscsi: values.iscsi,
        ...(access === undefined ? {} : { iscsiAccess: access }),
        queueDepth: values['queue-depth'],
        io: values.io,
        commandTimeoutS: values['command-timeout'],
        followSymlinks: values['follow-symlinks'],
        raw: values.raw,
        thirdPartyCopy: !values['no-third-party-copy'],
        controlDir: values['control-dir'],
        metrics: values.metrics,
        run: values.run,
        pidFile: values['pid-file'],
        logLevel: values['log-level'],
      };
    },
  }),
  status: defineCommand({
    summary: 'show the state, rates and latency of running serves (all, or NAME)',
    operands: [{ name: 'NAME', example: 'tcmufile status disk0', optional: true }],
    description:
      'Asks the running `tcmufile serve` of NAME (every serve with a control socket when NAME is ' +
      'left out) through its control socket and prints its state, uptime, command and byte rates ' +
      'and latency percentiles since it started.',
    options: statusOptions,
    build: (values, [name]) => ({
      kind: 'status',
      name: name === undefined ? undefined : checkVolumeName(name),
      json: values.json,
      controlDir: values['control-dir'],
    }),
  }),
  resize: defineCommand({
    summary: 'grow (or with --force shrink) the disk of a running serve',
    operands: [
      { name: 'NAME', example: 'tcmufile resize disk0 2G' },
      { name: 'SIZE', example: 'tcmufile resize disk0 2G' },
    ],
    description:
      'Asks the running serve of NAME to change its disk to SIZE bytes (512, 4K, 1M, 1G, 1T) while ' +
      'it serves: the image grows (sparse), the kernel learns the new size, initiators get CAPACITY ' +
      'DATA HAS CHANGED and /dev/sdX is rescanned. Grow the filesystem afterwards (resize2fs, ' +
      'xfs_growfs). A shrink is refused (65) unless --force.',
    options: resizeOptions,
    build: (values, [name, size]) => ({
      kind: 'resize',
      name: checkVolumeName(name!),
      size: parseSize(size!, 'SIZE'),
      force: values.force,
      controlDir: values['control-dir'],
    }),
  }),
  stop: defineCommand({
    summary: 'stop the serve of NAME; --keep leaves the disk for a restart',
    operands: [{ name: 'NAME', example: 'tcmufile stop disk0 --keep' }],
    description:
      'Stops the `tcmufile serve` serving NAME (found through its ownership marker) and waits for ' +
      'it to exit. Without --keep it removes the disk (SIGTERM); with --keep it leaves the disk, ' +
      'LUN and node for the next serve of the same image (SIGUSR2): an upgrade is `tcmufile stop ' +
      'NAME --keep` and then `tcmufile serve` of the new version. A disk of a serve from a config ' +
      'file stops alone, through its control socket, and the other disks keep being served.',
    options: stopOptions,
    build: (values, [name]) => ({
      kind: 'stop',
      name: checkVolumeName(name!),
      keep: values.keep,
      timeoutS: values.timeout,
      controlDir: values['control-dir'],
    }),
  }),
  doctor: defineCommand({
    summary: 'check that this machine can host a TCMU device (and reach an RBD image), and say how to fix it',
    operands: [
      {
        name: 'IMAGE',
        example: 'tcmufile doctor rbd:rbd/vol0 --ceph-conf /etc/ceph/ceph.conf',
        optional: true,
      },
    ],
    description:
      "Checks root, the kernel's loadable modules, the target_core_user and tcm_loop modules, UIO " +
      'and configfs, and prints the command that fixes each failed check.\n\n' +
      'Exits 0 when this machine can serve, else with the code of the first failure in the order ' +
      'to fix them: 77 not root; 69 no loadable modules, or a module missing; 78 configfs not mounted.\n\n' +
      'With an rbd:POOL/IMAGE it then checks the Ceph client side the same way: @tcmu/rbd and librbd ' +
      'load, --ceph-conf and --keyring are readable, a monitor answers and accepts --id, the pool and ' +
      'the image exist (69 librbd or the cluster unreachable, 77 the user refused, 66 a file, pool or ' +
      'image missing).',
    options: { ...cephOptions, help: helpFlag },
    build: (values, [image]) => {
      if (image !== undefined && !isRbdImage(image)) {
        throw new UsageError(`doctor checks an rbd: image only, not ${image}`, {
          fix: 'e.g. tcmufile doctor rbd:rbd/vol0',
        });
      }
      const rbd = cephRequest(values, image);
      return { kind: 'doctor', ...(rbd === undefined ? {} : { rbd }) };
    },
  }),
  list: defineCommand({
    summary: 'list the TCMU devices and targets in configfs (ours are marked)',
    operands: [],
    description:
      'Lists the TCMU backstores and loopback/iSCSI targets in configfs. Objects made by tcmufile ' +
      '(or @tcmu/device) are marked, with the process that owns them.',
    options: listOptions,
    build: (values) => ({ kind: 'list', json: values.json }),
  }),
  cleanup: defineCommand({
    summary: 'remove the configfs objects a crashed tcmufile left behind',
    operands: [],
    description:
      'Removes configfs objects made by tcmufile whose process is gone (after a crash or kill -9), ' +
      'and their device nodes. Objects of other programs and of running processes are left alone.',
    options: cleanupOptions,
    build: (values) => ({ kind: 'cleanup', dryRun: values['dry-run'] }),
  }),
};

/** An rbd: IMAGE with its Ceph client options; the Ceph options without one, and file-only options with one, are refused. */
function rbdRequest(values: OptionValues<typeof serveOptions>, image: string): RbdImageRequest | undefined {
  const rbd = cephRequest(values, image);
  if (rbd === undefined) return undefined;
  const fileOnly = [
    values.size !== undefined && [
      '--size',
      'an RBD image has its own size: grow it with `rbd resize` and the disk follows',
    ],
    values['follow-symlinks'] && ['--follow-symlinks', 'an RBD image is not a file'],
    values.raw && ['--raw', 'an RBD image is served as the raw blocks it holds'],
  ].find((entry): entry is [string, string] => entry !== false);
  if (fileOnly) throw new UsageError(`${fileOnly[0]} does not apply to rbd: images`, { fix: fileOnly[1] });
  return rbd;
}

/** The rbd: image and its --ceph-conf/--id/--keyring; those options without an rbd: image are refused. */
function cephRequest(
  values: OptionValues<typeof cephOptions>,
  image: string | undefined,
): RbdImageRequest | undefined {
  const ceph = { 'ceph-conf': values['ceph-conf'], id: values.id, keyring: values.keyring };
  if (image === undefined || !isRbdImage(image)) {
    const given = Object.entries(ceph).find(([, value]) => value !== undefined);
    if (given)
      throw new UsageError(`--${given[0]} is for rbd: images only`, {
        fix: 'e.g. tcmufile serve rbd:POOL/IMAGE --ceph-conf /etc/ceph/ceph.conf',
      });
    return undefined;
  }
  return {
    ...parseRbdImage(image),
    ...(ceph['ceph-conf'] === undefined ? {} : { conf: ceph['ceph-conf'] }),
    ...(ceph.id === undefined ? {} : { clientId: ceph.id }),
    ...(ceph.keyring === undefined ? {} : { keyring: ceph.keyring }),
  };
}

/** A cephx user name as `ceph auth` takes it, without the "client." prefix. */
function checkCephUser(text: string): string {
  if (text.startsWith('client.')) {
    throw new UsageError(`--id takes the user without "client." (got ${text})`, {
      fix: `--id ${text.slice(7)}`,
    });
  }
  if (!/^[A-Za-z0-9_.-]+$/.test(text)) throw new UsageError(`--id ${text} is not a cephx user name`);
  return text;
}

/** --iscsi's access options, checked before anything is created. */
function iscsiAccess(
  values: OptionValues<typeof serveOptions>,
  portal: IscsiPortal | undefined,
): IscsiAccessRequest | undefined {
  const initiators = values['iscsi-initiator'];
  if (portal === undefined) {
    const orphan = (['iscsi-initiator', 'chap-file', 'insecure-demo-mode'] as const).find((name) =>
      isGiven(name, values[name]),
    );
    if (orphan === undefined) return undefined;
    throw new UsageError(`--${orphan} needs --iscsi`, { fix: 'e.g. --iscsi 127.0.0.1:3260' });
  }
  if (refusesDemoMode(portal.host, initiators, values['insecure-demo-mode'])) {
    throw new UsageError(
      `--iscsi ${portal.host} without --iscsi-initiator would let any initiator on the network in (demo mode)`,
      { fix: 'name the initiators allowed with --iscsi-initiator IQN, or add --insecure-demo-mode' },
    );
  }
  if (values['chap-file'] !== undefined && initiators.length === 0) {
    throw new UsageError('--chap-file needs --iscsi-initiator: LIO checks CHAP per initiator ACL', {
      fix: 'name the initiators allowed with --iscsi-initiator IQN[,IQN...]',
    });
  }
  return { initiators, chapFile: values['chap-file'], insecureDemoMode: values['insecure-demo-mode'] };
}

/** With --config every disk's options are in the file: a command-line one would be ignored. */
function configCommand(values: OptionValues<typeof serveOptions>, image: string | undefined): Command {
  if (image !== undefined) {
    throw new UsageError(`IMAGE '${image}' does not go with --config`, { fix: 'list it in the config file' });
  }
  const given = Object.entries(values).find(
    ([name, value]) => name !== 'config' && isGiven(name as keyof typeof serveOptions, value),
  );
  if (given !== undefined) {
    throw new UsageError(`--${given[0]} does not go with --config`, {
      fix: 'set it per disk in the config file (docs/config.md)',
    });
  }
  return { kind: 'serve-config', config: values.config! };
}

/** Given on the command line: its value is not the table's default. */
function isGiven(name: keyof typeof serveOptions, value: unknown): boolean {
  const spec = serveOptions[name];
  return value !== (spec.kind === 'flag' ? false : spec.default);
}

function parseInitiators(text: string, flag: string): string[] {
  const names = text.split(',');
  for (const name of names) {
    try {
      validateIqn(flag, name);
    } catch (error) {
      throw new UsageError(`${flag} '${name}': ${(error as { reason?: string }).reason ?? 'not an IQN'}`, {
        fix: 'e.g. --iscsi-initiator iqn.1994-05.com.redhat:client',
      });
    }
  }
  if (new Set(names).size !== names.length)
    throw new UsageError(`${flag} '${text}' names an initiator twice`);
  return names;
}

/** Top-level options: `tcmufile --help`, `tcmufile --version`. */
export const mainOptions = {
  help: flag({ short: 'h', help: "show this help (a command's: `tcmufile help COMMAND`)" }),
  version: flag({ short: 'V', help: 'print the version' }),
} satisfies OptionTable;

const commandColumn = 20;

const operandLabel = (operand: Operand): string => (operand.optional ? `[${operand.name}]` : operand.name);

function formatMainUsage(): string {
  return [
    'Usage: tcmufile <command> [options]',
    '',
    ...wrap(
      "Serve an image file as a Linux block device through the kernel's TCMU (target_core_user).",
      helpWidth,
    ),
    '',
    'Commands:',
    ...commandNames.flatMap((name) =>
      columns(
        `  ${[name, ...commands[name].operands.map(operandLabel)].join(' ')}`,
        commands[name].summary,
        commandColumn,
      ),
    ),
    '',
    'Options:',
    ...formatOptions(mainOptions),
    '',
    "Run `tcmufile <command> --help` for a command's options.",
  ].join('\n');
}

function formatCommandUsage(name: CommandName): string {
  const { operands, description, options } = commands[name];
  const synopsis = ['tcmufile', name, ...operands.map(operandLabel), '[options]'].join(' ');
  const paragraphs = description.split('\n\n').map((paragraph) => wrap(paragraph, helpWidth).join('\n'));
  return [`Usage: ${synopsis}`, '', paragraphs.join('\n\n'), '', 'Options:', ...formatOptions(options)].join(
    '\n',
  );
}

/** Each command's `--help`, made from its table. */
export const usage: Readonly<Record<CommandName | 'main', string>> = {
  main: formatMainUsage(),
  ...(Object.fromEntries(commandNames.map((name) => [name, formatCommandUsage(name)])) as Record<
    CommandName,
    string
  >),
};

/** Parses argv (without node and the script path) into a command, or throws a UsageError. */
export function parseCommandLine(argv: readonly string[]): Command {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'help' || isMainOption(first, 'help')) {
    const topic = first === 'help' ? rest[0] : undefined;
    if (topic !== undefined && !isCommandName(topic)) throw unknownCommand(topic);
    return { kind: 'help', topic };
  }
  if (first === 'version' || isMainOption(first, 'version')) return { kind: 'version' };
  if (first.startsWith('-')) throw new UsageError(`expected a command before '${first}'`);
  if (!isCommandName(first)) throw unknownCommand(first);
  if (asksForHelp(rest)) return { kind: 'help', topic: first };
  try {
    return commands[first].parse(rest);
  } catch (error) {
    throw error instanceof UsageError ? error.inCommand(first) : error;
  }
}

function isMainOption(arg: string, name: keyof typeof mainOptions): boolean {
  return arg === `--${name}` || arg === `-${mainOptions[name].short}`;
}

function unknownCommand(word: string): UsageError {
  const guess = closest(word, commandNames);
  return new UsageError(`unknown command '${word}'${guess === undefined ? '' : ` (did you mean ${guess}?)`}`);
}

function isCommandName(text: string): text is CommandName {
  return (commandNames as readonly string[]).includes(text);
}

/** HOST:PORT with the port required ([::1]:9464 for IPv6). */
function parseMetricsAddress(text: string): IscsiPortal {
  if (!/:\d+$/.test(text))
    throw new UsageError(`--metrics '${text}' needs a port`, { fix: 'e.g. --metrics 127.0.0.1:9464' });
  return parsePortal(text, '--metrics', '127.0.0.1:9464');
}

const logLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

function parseLogLevel(text: string): LogLevel {
  if (!(logLevels as readonly string[]).includes(text)) {
    throw new UsageError(`--log-level must be debug, info, warn or error, got '${text}'`);
  }
  return text as LogLevel;
}

function nonEmpty(text: string, flag: string): string {
  if (text === '') throw new UsageError(`${flag} must not be empty`);
  return text;
}

/** A whole number of `flag`'s unit from `min` to `max`: digits only (no 1.5, 2x, 1e3). */
function parseWholeNumber(text: string, flag: string, min: number, max: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`${flag} '${text}' is not a whole number from ${min} to ${max}`);
  }
  return value;
}

/** Volume names become configfs directory names and a node under --dir: keep them plain. */
const volumeNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const maxVolumeNameLength = 64;

/** Returns `name` when it is a valid volume name. */
export function checkVolumeName(name: string): string {
  if (name.length > maxVolumeNameLength) {
    throw new UsageError(`volume name '${name}' is longer than ${maxVolumeNameLength} characters`);
  }
  if (!volumeNamePattern.test(name)) {
    throw new UsageError(`volume name '${name}' is not valid`, {
      fix: 'use letters, digits, dot, dash and underscore, starting with a letter or digit (--name vol0)',
    });
  }
  return name;
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
export function parsePortal(text: string, flag = '--iscsi', example = '127.0.0.1:3260'): IscsiPortal {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+))(?::(\d+))?$/.exec(text);
  if (!match)
    throw new UsageError(`${flag} '${text}' is not HOST[:PORT]`, { fix: `e.g. ${flag} ${example}` });
  const host = match[1] ?? match[2]!;
  const port = match[3] === undefined ? defaultIscsiPort : Number(match[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`${flag} port must be 1..65535, got '${match[3]}'`);
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
