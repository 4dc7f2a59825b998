import type { IoMode, IscsiPortal, ServeCommand } from './args.js';
import type { Device, IscsiInitiator } from '@tcmu/device';
import type { ImageRequest, PreparedImage } from './image.js';
import type { RbdImageRequest, RbdOpenRequest } from './rbd-image.js';
import { processSecrets, resolveInitiators, type SecretSource } from './iscsi-access.js';
import type { Logger } from './log.js';
import type { Notifier } from './notify.js';
import { writePidFile } from './pid-file.js';
import { formatBytes } from './size.js';
import type { PromRegistry } from '@tcmu/device';
import type { ControlHandlers, ControlServer } from './control.js';
import { ExitCode, ImageError, UsageError } from './errors.js';
import {
  type CounterSnapshot,
  formatStatusLine,
  LiveLine,
  type Rates,
  ratesBetween,
  type StatusReport,
} from './status.js';

/** What serve needs from an open device (a subset of @tcmu/device's Device). */
export interface ServedDevice {
  /** The @tcmu/device Device underneath (absent in serve's own test fakes). */
  readonly device?: Device;
  readonly diskPath: string | undefined;
  readonly nodePath: string | undefined;
  /** open adopted the disk an earlier serve left (after a crash or `stop --keep`). */
  readonly reattached: boolean;
  stats(): CounterSnapshot;
  close(options?: { drainTimeoutMs?: number }): Promise<void>;
  /** Stops serving and leaves the disk for the next serve. */
  detach(options?: { drainTimeoutMs?: number }): Promise<{ abandoned: number }>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  /** For the control socket's status (absent: reported as 'ready'). */
  readonly state?: string;
  /** Online resize to `blocks` (absent: this device cannot resize). */
  resize?(blocks: number, force: boolean): Promise<void>;
  /** Registers its Prometheus collectors (@tcmu/device's registerDeviceMetrics). */
  registerMetrics?(registry: PromRegistry): void;
}

/** Rates and percentiles a full device's stats() adds to the counters (@tcmu/device's DeviceStats). */
interface DetailedStats extends CounterSnapshot {
  iops?: number;
  readBytesPerSec?: number;
  writeBytesPerSec?: number;
  latency?: StatusReport['latency'];
}

/** Everything serve asks main to open: the image is already checked or created. */
export interface DeviceRequest {
  name: string;
  image: PreparedImage;
  blockSize: 512 | 4096;
  readOnly: boolean;
  nodeDir: string;
  iscsi: IscsiPortal | undefined;
  /** The iSCSI target's ACLs (with CHAP); undefined: demo mode. */
  iscsiInitiators?: readonly IscsiInitiator[] | undefined;
  /** The iSCSI target's name; default: derived from the volume name. */
  iscsiIqn?: string | undefined;
  /** LUN number on its targets; default 0. */
  lun?: number | undefined;
  queueDepth: number | undefined;
  io: IoMode;
  commandTimeoutS: number | undefined;
  thirdPartyCopy: boolean;
  logger: Logger;
}

export interface ServeDependencies {
  /** Throws an EnvironmentError naming the first thing missing (root, configfs, modules). */
  checkEnvironment(): Promise<void>;
  prepareImage(request: ImageRequest): Promise<PreparedImage>;
  /** Opens an rbd: IMAGE (the PreparedImage carries the open backend to openDevice). */
  prepareRbdImage?(request: RbdImageRequest, how: RbdOpenRequest): Promise<PreparedImage>;
  openDevice(request: DeviceRequest): Promise<ServedDevice>;
  /** Resolves with the first SIGINT/SIGTERM (remove the disk) or SIGUSR2 (leave it). */
  waitForStop(): Promise<string>;
  /** stdout: gets only the device path line. */
  writeOut(text: string): void;
  /** Set on a terminal: the live status line goes here. */
  writeStatus: ((text: string) => void) | undefined;
  logger: Logger;
  /** Status refresh period: ~1 s on a terminal, a log record every 10 s otherwise. */
  statusIntervalMs: number;
  now(): number;
  setInterval(callback: () => void, ms: number): { unref?(): void };
  clearInterval(handle: unknown): void;
  /** CHAP from --chap-file or the environment; default: this process's. */
  secrets?: SecretSource;
  /** Serves the device's metrics on `address` (serve --metrics). */
  startMetrics?(address: IscsiPortal, device: ServedDevice): Promise<{ url: string; close(): Promise<void> }>;
  /** `--run`: starts `/bin/sh -c commandLine` with `env` added; `exited` gives its exit status (128+N on signal N). */
  runCommand?(commandLine: string, env: Readonly<Record<string, string>>): RunningCommand;
  /** systemd's Type=notify protocol (READY, STATUS, STOPPING, WATCHDOG); absent outside systemd. */
  notifier?: Notifier | undefined;
  /** Opens the control socket of `name` (status, resize); absent: none. */
  startControl?(name: string, handlers: ControlHandlers): Promise<ControlServer>;
}

export interface RunningCommand {
  readonly exited: Promise<number>;
  kill(signal: NodeJS.Signals): void;
}

/** How long close() may wait for in-flight commands before aborting them. */
export const drainTimeoutMs = 10_000;

/**
 * `tcmufile serve`: check the machine, prepare the image, open the device, print its path,
 * report activity until a stop signal, then close it. Returns the exit code (0 on a clean stop).
 */
export async function serve(command: ServeCommand, deps: ServeDependencies): Promise<number> {
  const { logger } = deps;
  const iscsiInitiators =
    command.iscsiAccess && (await resolveInitiators(command.iscsiAccess, deps.secrets ?? processSecrets));
  await deps.checkEnvironment();
  const image = command.rbd
    ? await deps.prepareRbdImage!(command.rbd, { blockSize: command.blockSize, readOnly: command.readOnly })
    : await prepareServedImage(deps, {
        path: command.image,
        size: command.size,
        blockSize: command.blockSize,
        readOnly: command.readOnly,
        followSymlinks: command.followSymlinks,
        raw: command.raw,
      });
  const device = await deps.openDevice({
    name: command.name,
    image,
    blockSize: command.blockSize,
    readOnly: command.readOnly,
    nodeDir: command.dir,
    iscsi: command.iscsi,
    iscsiInitiators,
    queueDepth: command.queueDepth,
    io: command.io,
    commandTimeoutS: command.commandTimeoutS,
    thirdPartyCopy: command.thirdPartyCopy,
    logger,
  });
  const path = device.nodePath ?? device.diskPath;
  if (path === undefined) {
    await device.close({ drainTimeoutMs });
    throw new Error(
      `device ${command.name} opened without a disk: is tcm_loop working? (run \`tcmufile doctor\`)`,
    );
  }
  deps.writeOut(`${path}\n`);
  logger.info(
    {
      volume: command.name,
      disk: device.diskPath,
      node: device.nodePath,
      image: image.path,
      size: image.size,
      blockSize: command.blockSize,
      readOnly: command.readOnly,
      iscsi: command.iscsi ? `${command.iscsi.host}:${command.iscsi.port}` : undefined,
    },
    `${device.reattached ? 'serving again (took over the disk an earlier tcmufile left)' : 'serving'} ${image.path} (${formatBytes(image.size)}, ${command.blockSize}-byte blocks${command.readOnly ? ', read-only' : ''}) as ${describePaths(device)}`,
  );
  device.on('error', (error) => logger.error({ err: error }, `device error: ${error.message}`));

  const reporter = startReporter(device, `${device.diskPath ?? path} ${command.name}`, deps);
  // The control socket and the metrics endpoint; if one cannot start, the disk goes too.
  const services = await startServices(
    command,
    device,
    controlHandlers(command, image, device, deps),
    deps,
  ).catch(async (error: unknown) => {
    reporter.stop();
    await device.close({ drainTimeoutMs });
    throw error;
  });
  const removePidFile =
    command.pidFile === undefined
      ? undefined
      : await writePidFile(command.pidFile).catch(async (error: unknown) => {
          await services.close();
          reporter.stop();
          await device.close({ drainTimeoutMs });
          throw error;
        });
  await deps.notifier?.send({ READY: '1', STATUS: `serving ${image.path} as ${describePaths(device)}` });
  const stopWatchdog = deps.notifier?.startWatchdog();
  const run = command.run === undefined ? undefined : startRun(command.run, device, deps);
  const signal = await (run?.until(deps.waitForStop()) ?? deps.waitForStop()).finally(() =>
    Promise.all([services.close(), removePidFile?.()]),
  );
  const exitStatus = run === undefined ? 0 : await run.status();
  stopWatchdog?.();
  await deps.notifier?.send({ STOPPING: '1', STATUS: `${signal}: stopping ${command.name}` });
  reporter.stop();
  if (signal === 'SIGUSR2') {
    logger.info({ signal }, `${signal}: leaving ${command.name} for the next tcmufile serve`);
    const paths = describePaths(device);
    const { abandoned } = await device.detach({ drainTimeoutMs });
    logger.info(
      { abandoned },
      `left ${paths} in place; \`tcmufile serve ${image.path} --name ${command.name}\` takes it over`,
    );
    return exitStatus;
  }
  logger.info({ signal }, `${signal}: stopping ${command.name}`);
  await device.close({ drainTimeoutMs });
  const totals = device.stats();
  logger.info(
    {
      commands: totals.commands,
      errors: totals.errors,
      bytesRead: totals.bytesRead,
      bytesWritten: totals.bytesWritten,
    },
    `stopped ${command.name}: ${totals.commands} commands, ${totals.errors} errors`,
  );
  return exitStatus;
}

/**
 * `--run CMD`: the command runs while the disk is served; its exit stops the serve (as the
 * pseudo-signal 'exit'), and a stop signal first stops the command (SIGTERM) and waits for it.
 */
function startRun(
  commandLine: string,
  device: ServedDevice,
  deps: ServeDependencies,
): { until(stop: Promise<string>): Promise<string>; status(): Promise<number> } {
  if (deps.runCommand === undefined) throw new Error('--run needs a runCommand dependency');
  const env = { DISK: device.diskPath ?? '', NODE: device.nodePath ?? device.diskPath ?? '' };
  const child = deps.runCommand(commandLine, env);
  deps.logger.info({ run: commandLine, ...env }, `running ${commandLine}`);
  let exited = false;
  const status = child.exited.then((code) => {
    exited = true;
    deps.logger.info({ run: commandLine, status: code }, `${commandLine} exited with ${code}`);
    return code;
  });
  return {
    until: (stop) => Promise.race([stop, status.then(() => 'exit')]),
    status: () => {
      if (!exited) child.kill('SIGTERM');
      return status;
    },
  };
}

/** What the control socket answers: status, and online resize of the disk. */
export function controlHandlers(
  command: Pick<ServeCommand, 'name' | 'blockSize' | 'readOnly'>,
  image: PreparedImage,
  device: ServedDevice,
  deps: Pick<ServeDependencies, 'logger' | 'now'>,
): ControlHandlers {
  const { logger } = deps;
  const startedAt = deps.now();
  let sizeBytes = image.size;
  return {
    status: (): StatusReport => {
      const stats: DetailedStats = device.stats();
      return {
        name: command.name,
        pid: process.pid,
        state: device.state ?? 'ready',
        uptimeS: (deps.now() - startedAt) / 1000,
        image: image.path,
        sizeBytes,
        blockSize: command.blockSize,
        readOnly: command.readOnly,
        disk: device.diskPath,
        node: device.nodePath,
        commands: stats.commands,
        errors: stats.errors,
        inFlight: stats.inFlight,
        bytesRead: stats.bytesRead,
        bytesWritten: stats.bytesWritten,
        iops: stats.iops ?? 0,
        readBytesPerSec: stats.readBytesPerSec ?? 0,
        writeBytesPerSec: stats.writeBytesPerSec ?? 0,
        latency: stats.latency,
      };
    },
    resize: async (bytes, force) => {
      if (device.resize === undefined) throw new Error(`${command.name} cannot be resized by this serve`);
      if (bytes % command.blockSize !== 0) {
        throw new UsageError(`size ${bytes} is not a multiple of the ${command.blockSize}-byte block`);
      }
      const previous = sizeBytes;
      await device.resize(bytes / command.blockSize, force).catch((error: unknown) => {
        const reason = (error as { reason?: unknown }).reason;
        if (reason === 'unsupported') {
          throw new ImageError(
            `${command.name} cannot be resized: it is served read-only`,
            ExitCode.badImage,
            {
              fix: 'serve it without --read-only to resize it',
            },
          );
        }
        if (reason !== 'shrink') throw error;
        throw new ImageError(
          `refusing to shrink ${command.name} from ${formatBytes(previous)} to ${formatBytes(bytes)}: its end would be cut off`,
          ExitCode.badImage,
          { fix: 'shrink the filesystem on it first, then add --force' },
        );
      });
      sizeBytes = bytes;
      logger.info(
        { volume: command.name, size: bytes, previous },
        `resized ${command.name} to ${formatBytes(bytes)}`,
      );
      return { sizeBytes: bytes, previousBytes: previous };
    },
  };
}

/** Starts the control socket and the metrics endpoint the command asks for; close() stops both. */
async function startServices(
  command: ServeCommand,
  device: ServedDevice,
  handlers: ControlHandlers,
  deps: ServeDependencies,
): Promise<{ close(): Promise<void> }> {
  const { logger } = deps;
  const control = await deps.startControl?.(command.name, handlers);
  if (control)
    logger.info({ control: control.path }, `control socket ${control.path} (tcmufile status, resize)`);
  try {
    const metrics =
      command.metrics === undefined ? undefined : await deps.startMetrics?.(command.metrics, device);
    if (metrics) logger.info({ metrics: metrics.url }, `metrics on ${metrics.url}`);
    return { close: async () => void (await Promise.all([control?.close(), metrics?.close()])) };
  } catch (error) {
    await control?.close();
    throw error;
  }
}

/** deps.prepareImage, logging a created image and a served prefix of a bigger one. */
export async function prepareServedImage(
  deps: Pick<ServeDependencies, 'prepareImage' | 'logger'>,
  request: ImageRequest,
): Promise<PreparedImage> {
  const { logger } = deps;
  const image = await deps.prepareImage(request);
  if (image.created)
    logger.info({ image: image.path, size: image.size }, `created sparse image ${image.path}`);
  if (image.fileSize > image.size) {
    logger.warn(
      { image: image.path, fileSize: image.fileSize, size: image.size },
      `serving the first ${formatBytes(image.size)} of the ${formatBytes(image.fileSize)} image`,
    );
  }
  return image;
}

function describePaths(device: ServedDevice): string {
  const { nodePath, diskPath } = device;
  if (nodePath && diskPath && nodePath !== diskPath) return `${nodePath} -> ${diskPath}`;
  return nodePath ?? diskPath ?? '?';
}

/** Samples the counters on a timer: redraws the live line, or logs a record when there was activity. */
function startReporter(device: ServedDevice, label: string, deps: ServeDependencies): { stop(): void } {
  const live = deps.writeStatus ? new LiveLine(deps.writeStatus) : undefined;
  let previous = device.stats();
  let previousAt = deps.now();
  let loggedErrors = previous.errors;
  const sample = () => {
    const current = device.stats();
    const at = deps.now();
    const rates = ratesBetween(previous, current, at - previousAt);
    previous = current;
    previousAt = at;
    if (live) {
      live.update(formatStatusLine(label, rates));
    } else if (rates.commands > 0 || rates.errors !== loggedErrors) {
      loggedErrors = rates.errors;
      deps.logger.info(statsRecord(rates), 'activity');
    }
  };
  if (live) live.update(formatStatusLine(label, ratesBetween(previous, previous, 1)));
  const timer = deps.setInterval(sample, deps.statusIntervalMs);
  timer.unref?.();
  return {
    stop() {
      deps.clearInterval(timer);
      live?.finish();
    },
  };
}

function statsRecord(rates: Rates): Record<string, number> {
  return {
    iops: Math.round(rates.iops),
    readMBps: Math.round(rates.readBytesPerSecond / 1e5) / 10,
    writeMBps: Math.round(rates.writeBytesPerSecond / 1e5) / 10,
    inFlight: rates.inFlight,
    errors: rates.errors,
  };
}
