import {
  BackendWrapper,
  openFileBackend,
  type OpenDeviceOptions,
  openDevice,
  ReadOnlyBackend,
  registerDeviceMetrics,
} from '@tcmu/device';
import { realpath } from 'node:fs/promises';
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
  const file = await openFileBackend(request.image.path, {
    blockSize: request.blockSize,
    readOnly: request.readOnly,
    io: request.io === 'async' ? 'async' : 'sync',
  });
  try {
    const sized = prefixView(file, request.image.size / request.blockSize);
    const backend = request.readOnly ? new ReadOnlyBackend(sized) : sized;
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
      backend,
      nodeDir: request.nodeDir,
      fabric,
      logger: request.logger,
      nativeLane: request.io === 'native',
      unit: { thirdPartyCopy: request.thirdPartyCopy },
      // A restarted serve of the same image adopts the disk; another image under this name is refused.
      source: await realpath(request.image.path),
      ...(request.queueDepth === undefined ? {} : { queueDepth: request.queueDepth }),
      ...(request.lun === undefined ? {} : { lun: request.lun }),
      ...(request.commandTimeoutS === undefined ? {} : { commandTimeoutS: request.commandTimeoutS }),
    });
    return {
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
          await file.close();
        }
      },
      detach: async (options) => {
        try {
          return await device.detach(options);
        } finally {
          await file.close();
        }
      },
      on: (event, listener) => device.on(event, listener),
      get state() {
        return device.state;
      },
      resize: (blocks, force) => device.resize(blocks, { force }),
      registerMetrics: (registry) => registerDeviceMetrics(registry, device),
    };
  } catch (error) {
    await file.close();
    throw error;
  }
}

function formatPortal(portal: { host: string; port: number }): string {
  return portal.host.includes(':') ? `[${portal.host}]:${portal.port}` : `${portal.host}:${portal.port}`;
}
