import type { RbdBackend } from '@tcmu/rbd';
import {
  BackendWrapper,
  type Device,
  openFileBackend,
  type OpenDeviceOptions,
  openDevice,
  ReadOnlyBackend,
  registerDeviceMetrics,
} from '@tcmu/device';
import { realpath } from 'node:fs/promises';
import { loadRbd } from './rbd-image.js';
import type { DeviceRequest, ServedDevice } from './serve.js';

type Backend = NonNullable<OpenDeviceOptions['backend']>;

/**
 * The first `blockCount` blocks of a backend: serving `--size` bytes of a bigger image.
 * Every capability and flag is the inner backend's (the shared BackendWrapper), the
 * direct file included: the emulation, and the native lane with it, range-check every
 * LBA against this blockCount, so the tail is never reached. Only the provisioning
 * usage is withheld: the image's allocation counts the tail too.
 */
class PrefixBackend extends BackendWrapper {
  #blockCount: number;

  constructor(inner: Backend, blockCount: number) {
    super(inner, ['provisioningUsage']);
    this.#blockCount = blockCount;
  }

  override get blockCount(): number {
    return this.#blockCount;
  }

  protected override mappingStatusInner(lba: number, maxBlocks: number) {
    return this.inner.mappingStatus!(lba, Math.min(maxBlocks, this.#blockCount - lba));
  }

  /** Within the image only the view changes; past its end the image grows. */
  protected override async resizeInner(blockCount: number): Promise<void> {
    if (blockCount > this.inner.blockCount) await this.inner.resize!(blockCount);
    this.#blockCount = blockCount;
  }
}

export function prefixView(inner: Backend, blockCount: number): Backend {
  if (blockCount === inner.blockCount) return inner;
  if (!Number.isSafeInteger(blockCount) || blockCount < 1 || blockCount > inner.blockCount) {
    throw new RangeError(`prefix of ${blockCount} blocks does not fit a backend of ${inner.blockCount}`);
  }
  return new PrefixBackend(inner, blockCount);
}

/** `tcmufile serve`'s device: the image through the file backend, on loopback (plus iSCSI). */
export async function openImageDevice(request: DeviceRequest): Promise<ServedDevice> {
  if (request.image.rbd) return openRbdImageDevice(request, request.image.rbd);
  const file = await openFileBackend(request.image.path, {
    blockSize: request.blockSize,
    readOnly: request.readOnly,
    io: request.io === 'async' ? 'async' : 'sync',
  });
  try {
    const sized = prefixView(file, request.image.size / request.blockSize);
    return await serveBackend(request, {
      backend: request.readOnly ? new ReadOnlyBackend(sized) : sized,
      nativeLane: request.io === 'native',
      // A restarted serve of the same image adopts the disk; another image under this name is refused.
      source: await realpath(request.image.path),
      closeBackend: () => file.close(),
    });
  } catch (error) {
    await file.close();
    throw error;
  }
}

/**
 * An RBD image (opened by prepareRbdImage): COMPARE AND WRITE goes to the OSD, and when another
 * client resizes the image the kernel's size, READ CAPACITY and /dev/sdX follow.
 */
export async function openRbdImageDevice(
  request: DeviceRequest,
  rbd: RbdBackend,
  extra: Partial<OpenDeviceOptions> = {},
): Promise<ServedDevice> {
  const { installRbdCommands } = await loadRbd();
  let stopFollowing = () => {};
  try {
    return await serveBackend(
      request,
      {
        backend: rbd,
        nativeLane: false,
        source: request.image.path,
        closeBackend: async () => {
          stopFollowing();
          await rbd.close();
        },
        serving: (device) => {
          const uninstall = installRbdCommands(device.unit!, rbd);
          const unfollow = rbd.onResize((blocks) => {
            device
              .resize(blocks, { force: true })
              .catch((error: unknown) =>
                request.logger.warn(
                  { err: error, blocks },
                  'the RBD image was resized but the disk did not follow',
                ),
              );
          });
          stopFollowing = () => {
            unfollow();
            uninstall();
          };
        },
      },
      extra,
    );
  } catch (error) {
    await rbd.close();
    throw error;
  }
}

interface ServedBackend {
  readonly backend: Backend;
  readonly nativeLane: boolean;
  /** What the ownership marker records: a reattach must serve the same source. */
  readonly source: string;
  readonly closeBackend: () => Promise<void>;
  /** Runs once the device is open. */
  readonly serving?: (device: Device) => void;
}

async function serveBackend(
  request: DeviceRequest,
  served: ServedBackend,
  extra: Partial<OpenDeviceOptions> = {},
): Promise<ServedDevice> {
  const fabric: OpenDeviceOptions['fabric'] = request.iscsi
    ? [
        { type: 'loopback' },
        {
          type: 'iscsi',
          portal: formatPortal(request.iscsi),
          ...(request.iscsiInitiators ? { initiators: request.iscsiInitiators } : {}),
          ...(request.iscsiIqn === undefined ? {} : { iqn: request.iscsiIqn }),
        },
      ]
    : { type: 'loopback' };
  const device = await openDevice({
    name: request.name,
    backend: served.backend,
    nodeDir: request.nodeDir,
    fabric,
    logger: request.logger,
    nativeLane: served.nativeLane,
    unit: { thirdPartyCopy: request.thirdPartyCopy },
    source: served.source,
    ...(request.queueDepth === undefined ? {} : { queueDepth: request.queueDepth }),
    ...(request.lun === undefined ? {} : { lun: request.lun }),
    ...(request.commandTimeoutS === undefined ? {} : { commandTimeoutS: request.commandTimeoutS }),
    ...extra,
  });
  served.serving?.(device);
  return {
    device,
    get diskPath() {
      return device.diskPath;
    },
    get nodePath() {
      return device.nodePath;
    },
    reattached: device.reattached,
    stats: () => device.stats(),
    close: async (options) => {
      try {
        await device.close(options);
      } finally {
        await served.closeBackend();
      }
    },
    detach: async (options) => {
      try {
        return await device.detach(options);
      } finally {
        await served.closeBackend();
      }
    },
    on: (event, listener) => device.on(event, listener),
    get state() {
      return device.state;
    },
    resize: (blocks, force) => device.resize(blocks, { force }),
    registerMetrics: (registry) => registerDeviceMetrics(registry, device),
  };
}

function formatPortal(portal: { host: string; port: number }): string {
  return portal.host.includes(':') ? `[${portal.host}]:${portal.port}` : `${portal.host}:${portal.port}`;
}
