import { Device } from './device.js';
import { DeviceClosedError, InvalidDeviceOptionError, TeardownError } from './errors.js';
import { type DeviceLogger, silentLogger } from './handler.js';
import { loopbackWwn, validateName } from './identity.js';
import { type OpenDeviceOptions, resolveOptions } from './options.js';
import type { DevicePlatform, TargetRef } from './platform.js';
import { createEmulation, servedUnits } from './scsi.js';
import { defaultPlatform } from './system.js';

/**
 * Validates the options and builds the device without touching the system;
 * `await device.open()` then does the setup (subscribe to 'ready' first).
 * @throws InvalidDeviceOptionError
 */
export function createDevice(options: OpenDeviceOptions): Device {
  return build(options, undefined);
}

/**
 * Serves a block device: creates the TCMU backstore, opens its ring, exports
 * it (loopback by default), waits for the disk and makes the node. A failure
 * at any step undoes the earlier ones and throws DeviceSetupError.
 * @throws InvalidDeviceOptionError, DeviceSetupError
 */
export async function openDevice(options: OpenDeviceOptions): Promise<Device> {
  const device = createDevice(options);
  await device.open();
  return device;
}

function build(
  options: OpenDeviceOptions,
  attach: { target: TargetRef; lun: number | undefined; platform: DevicePlatform } | undefined,
): Device {
  const resolved = resolveOptions(options, { attached: attach !== undefined });
  const emulation = createEmulation({
    backend: options.backend,
    handler: options.handler,
    middleware: resolved.middleware,
    identity: resolved.identity,
    unit: options.unit,
    logger: resolved.logger,
    blockSize: resolved.blockSize,
    hwMaxSectors: resolved.hwMaxSectors,
    fabrics: attach ? [attach.target.type] : resolved.targets.map((target) => target.type),
  });
  const platform = attach?.platform ?? options.platform ?? defaultPlatform();
  const device = new Device(
    resolved,
    emulation,
    platform,
    attach && { target: attach.target, lun: attach.lun },
  );
  const { unit } = emulation;
  if (unit?.config.extendedCopy) {
    // LIO's EXTENDED COPY reaches the devices of its host (target_core_xcopy.c); ours, the
    // units this process serves while they are up.
    device.once('ready', () => device.once('close', servedUnits.register(unit)));
  }
  return device;
}

export interface OpenTargetOptions {
  /** Seeds the default WWNs, so a target keeps its name across runs (default: random). */
  readonly name?: string;
  /** Target WWN `naa.<16 hex>`. */
  readonly wwn?: string;
  /** Initiator WWN of the I_T nexus. */
  readonly nexusWwn?: string;
  readonly logger?: DeviceLogger;
  readonly platform?: DevicePlatform;
}

/** Options of a device joining a Target: the target supplies fabric, platform and node placement rules. */
export type TargetDeviceOptions = Omit<OpenDeviceOptions, 'platform' | 'fabric'>;

/**
 * One loopback target hosting several devices as LUNs 0, 1, 2… of one
 * SCSI host. close() closes its devices, then removes the target.
 */
export class Target {
  readonly wwn: string;
  readonly #ref: TargetRef;
  readonly #platform: DevicePlatform;
  readonly #logger: DeviceLogger;
  readonly #devices = new Set<Device>();
  #queue: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  private constructor(ref: TargetRef, platform: DevicePlatform, logger: DeviceLogger) {
    this.#ref = ref;
    this.wwn = ref.wwn;
    this.#platform = platform;
    this.#logger = logger;
  }

  /** Creates the loopback target and its I_T nexus. */
  static async open(options: OpenTargetOptions = {}): Promise<Target> {
    const seed =
      options.name === undefined ? `random ${Math.random()} ${Date.now()}` : validateName(options.name);
    const platform = options.platform ?? defaultPlatform();
    const ref = await platform.createTarget({
      type: 'loopback',
      wwn: options.wwn ?? loopbackWwn(seed, 'target'),
      nexusWwn: options.nexusWwn ?? loopbackWwn(seed, 'initiator'),
    });
    return new Target(ref, platform, options.logger ?? silentLogger);
  }

  get devices(): readonly Device[] {
    return [...this.#devices];
  }

  /** Adds a device as a LUN of this target (lowest free LUN unless `lun` is given). */
  openDevice(options: TargetDeviceOptions): Promise<Device> {
    if (this.#closing) return Promise.reject(new DeviceClosedError(`target ${this.wwn} is closed`));
    if ('fabric' in options || 'platform' in options) {
      return Promise.reject(
        new InvalidDeviceOptionError('fabric', 'a device on a Target takes its fabric and platform from it'),
      );
    }
    // One at a time: the lowest free LUN must not be taken twice.
    const run = this.#queue.then(async () => {
      const device = build(options, { target: this.#ref, lun: options.lun, platform: this.#platform });
      await device.open();
      this.#devices.add(device);
      device.onRelease = () => this.#devices.delete(device);
      return device;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Closes every device, then removes the target (TPG, nexus, WWN directory). Idempotent. */
  close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= (async () => {
      await this.#queue;
      const errors: unknown[] = [];
      const results = await Promise.allSettled([...this.#devices].map((device) => device.close(options)));
      for (const result of results) if (result.status === 'rejected') errors.push(result.reason);
      try {
        await this.#platform.removeTarget(this.#ref);
      } catch (error) {
        this.#logger.warn({ target: this.wwn, err: error }, 'target removal failed');
        errors.push(error);
      }
      if (errors.length > 0) throw new TeardownError(errors);
    })();
    return this.#closing;
  }
}

/** Shorthand for Target.open(). */
export const openTarget = (options?: OpenTargetOptions): Promise<Target> => Target.open(options);
