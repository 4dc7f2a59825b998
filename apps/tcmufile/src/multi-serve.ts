import type { ServeConfigCommand } from './args.js';
import { ConfigError, type DiskSpec, loadConfig } from './config.js';
import type { ControlServer } from './control.js';
import type { SecretSource } from './iscsi-access.js';
import {
  controlHandlers,
  type DeviceRequest,
  drainTimeoutMs,
  prepareServedImage,
  type ServeDependencies,
  type ServedDevice,
} from './serve.js';

export interface ServeConfigDependencies
  extends Pick<
    ServeDependencies,
    | 'checkEnvironment'
    | 'prepareImage'
    | 'openDevice'
    | 'waitForStop'
    | 'logger'
    | 'now'
    | 'startControl'
    | 'notifier'
  > {
  readConfig(path: string): Promise<string>;
  secrets: SecretSource;
  /** Calls `listener` on every SIGHUP; returns the unsubscribe. */
  onReload(listener: () => void): () => void;
  /** stdout: one `NAME PATH` line per disk once it is served. */
  writeOut(text: string): void;
}

interface Running {
  readonly spec: DiskSpec;
  readonly device: ServedDevice;
  /** Its control socket NAME.sock: status, resize, and stop of this disk alone. */
  readonly control: ControlServer | undefined;
}

/** Stops one disk of the serve (`tcmufile stop NAME [--keep]` over its control socket). */
type StopOne = (name: string, keep: boolean) => Promise<unknown>;

/**
 * `tcmufile serve --config FILE`: serves every disk FILE lists; SIGHUP re-reads it. A bad file
 * creates nothing (at start: exit 64; on a reload: logged, the disks served stay as they are).
 * Disks compare by name and their whole spec: an unchanged one is left alone, a changed one is
 * closed and opened again, a removed one closed.
 */
export async function serveConfig(
  command: ServeConfigCommand,
  deps: ServeConfigDependencies,
): Promise<number> {
  const { logger } = deps;
  const load = () => loadConfig(command.config, { readFile: deps.readConfig, secrets: deps.secrets });
  const specs = await load();
  await deps.checkEnvironment();
  const running = new Map<string, Running>();
  // Until the next reload, which serves it again if the file still lists it.
  const stopOne: StopOne = async (name, keep) => {
    const disk = running.get(name);
    if (disk === undefined) throw new Error(`${name} is no longer served`);
    running.delete(name);
    // The socket closes once this answer is out: the client hangs up after reading it.
    void disk.control?.close();
    if (keep) await disk.device.detach({ drainTimeoutMs });
    else await disk.device.close({ drainTimeoutMs });
    logger.info(
      { volume: name, keep },
      keep ? `left ${name} for the next serve (tcmufile stop --keep)` : `stopped ${name} (tcmufile stop)`,
    );
    return { name, kept: keep };
  };
  try {
    for (const spec of specs) running.set(spec.name, await start(spec, deps, stopOne));
  } catch (error) {
    await closeAll(running, deps);
    throw error;
  }
  logger.info(
    { config: command.config, disks: running.size },
    `serving ${running.size} disks of ${command.config}`,
  );
  // systemd Type=notify: ready once every disk of the file is served.
  await deps.notifier?.send({ READY: '1', STATUS: `serving ${running.size} disks of ${command.config}` });
  const stopWatchdog = deps.notifier?.startWatchdog();

  // One reload at a time; a stop waits for the one under way.
  let reloading: Promise<void> = Promise.resolve();
  const unsubscribe = deps.onReload(() => {
    reloading = reloading.then(() => reload(command.config, load, running, deps, stopOne));
  });
  let signal: string;
  try {
    signal = await deps.waitForStop();
  } finally {
    unsubscribe();
    stopWatchdog?.();
  }
  await reloading;
  await deps.notifier?.send({ STOPPING: '1', STATUS: `${signal}: stopping ${running.size} disks` });
  if (signal === 'SIGUSR2') {
    logger.info({ signal }, `${signal}: leaving ${running.size} disks for the next tcmufile serve --config`);
    await settleAll(
      [...running.values()].map((disk) => closeDisk(disk, true)),
      deps,
    );
    return 0;
  }
  logger.info({ signal }, `${signal}: stopping ${running.size} disks`);
  await closeAll(running, deps);
  return 0;
}

async function reload(
  config: string,
  load: () => Promise<DiskSpec[]>,
  running: Map<string, Running>,
  deps: ServeConfigDependencies,
  stopOne: StopOne,
): Promise<void> {
  const { logger } = deps;
  let specs: DiskSpec[];
  try {
    specs = await load();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    logger.error({ config, problems: error.problems }, `SIGHUP: ${error.message}; nothing changed`);
    return;
  }
  const wanted = new Map(specs.map((spec) => [spec.name, spec]));
  const removed = [...running.values()].filter(({ spec }) => wanted.get(spec.name)?.key !== spec.key);
  const added = specs.filter((spec) => running.get(spec.name)?.spec.key !== spec.key);
  for (const disk of removed) {
    const { spec } = disk;
    running.delete(spec.name);
    try {
      await closeDisk(disk, false);
      logger.info({ volume: spec.name }, `removed ${spec.name}`);
    } catch (error) {
      logger.error(
        { volume: spec.name, err: error },
        `removing ${spec.name} failed: ${(error as Error).message}`,
      );
    }
  }
  let failed = 0;
  for (const spec of added) {
    try {
      running.set(spec.name, await start(spec, deps, stopOne));
    } catch (error) {
      failed++;
      logger.error(
        { volume: spec.name, err: error },
        `adding ${spec.name} failed: ${(error as Error).message}`,
      );
    }
  }
  logger.info(
    { config, added: added.length - failed, removed: removed.length, failed, disks: running.size },
    `SIGHUP: reloaded ${config}: ${added.length - failed} added, ${removed.length} removed, ${running.size - (added.length - failed)} unchanged${failed ? `, ${failed} failed` : ''}`,
  );
}

async function start(spec: DiskSpec, deps: ServeConfigDependencies, stopOne: StopOne): Promise<Running> {
  const { logger } = deps;
  const image = await prepareServedImage(deps, {
    path: spec.image,
    size: spec.size,
    blockSize: spec.blockSize,
    readOnly: spec.readOnly,
  });
  const request: DeviceRequest = {
    name: spec.name,
    image,
    blockSize: spec.blockSize,
    readOnly: spec.readOnly,
    nodeDir: spec.dir,
    iscsi: spec.iscsi?.portal,
    iscsiIqn: spec.iscsi?.iqn,
    iscsiInitiators: spec.iscsi?.initiators,
    lun: spec.lun,
    queueDepth: spec.queueDepth,
    io: spec.io,
    commandTimeoutS: spec.commandTimeoutS,
    thirdPartyCopy: spec.thirdPartyCopy,
    logger,
  };
  const device = await deps.openDevice(request);
  device.on('error', (error) =>
    logger.error({ volume: spec.name, err: error }, `device error: ${error.message}`),
  );
  const path = device.nodePath ?? device.diskPath;
  if (path === undefined) {
    await device.close({ drainTimeoutMs });
    throw new Error(
      `device ${spec.name} opened without a disk: is tcm_loop working? (run \`tcmufile doctor\`)`,
    );
  }
  let control: ControlServer | undefined;
  try {
    control = await deps.startControl?.(spec.name, {
      ...controlHandlers(spec, image, device, deps),
      stop: (keep) => stopOne(spec.name, keep),
    });
  } catch (error) {
    await device.close({ drainTimeoutMs });
    throw error;
  }
  deps.writeOut(`${spec.name} ${path}\n`);
  logger.info(
    { volume: spec.name, disk: device.diskPath, node: device.nodePath, image: image.path, size: image.size },
    `serving ${image.path} as ${path}`,
  );
  return { spec, device, control };
}

/** Its control socket first, then the disk: removed, or with `keep` left for the next serve. */
async function closeDisk({ device, control }: Running, keep: boolean): Promise<unknown> {
  await control?.close();
  return keep ? device.detach({ drainTimeoutMs }) : device.close({ drainTimeoutMs });
}

async function closeAll(running: Map<string, Running>, deps: ServeConfigDependencies): Promise<void> {
  const devices = [...running.values()].map((disk) => closeDisk(disk, false));
  running.clear();
  await settleAll(devices, deps);
}

/** Waits for every close/detach; the first failure is thrown once all are done. */
async function settleAll(work: Array<Promise<unknown>>, deps: ServeConfigDependencies): Promise<void> {
  const results = await Promise.allSettled(work);
  const failures = results.filter((result) => result.status === 'rejected');
  for (const failure of failures.slice(1)) {
    deps.logger.error({ err: failure.reason }, `closing a disk failed: ${(failure.reason as Error).message}`);
  }
  if (failures[0]) throw failures[0].reason;
}
