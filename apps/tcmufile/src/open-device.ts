import { FileBackend, type OpenDeviceOptions, openDevice, ReadOnlyBackend } from '@tcmu/device';
import type { DeviceRequest, ServedDevice } from './serve.js';

type Backend = NonNullable<OpenDeviceOptions['backend']>;

/**
 * The first `blockCount` blocks of `inner`: serving `--size` bytes of a bigger image. The
 * emulation range-checks every LBA against blockCount, so the tail is never reached.
 */
export function prefixView(inner: Backend, blockCount: number): Backend {
  if (blockCount === inner.blockCount) return inner;
  if (!Number.isSafeInteger(blockCount) || blockCount < 1 || blockCount > inner.blockCount) {
    throw new RangeError(`prefix of ${blockCount} blocks does not fit a backend of ${inner.blockCount}`);
  }
  const view: Backend = {
    blockSize: inner.blockSize,
    blockCount,
    readOnly: inner.readOnly,
    physicalBlockExponent: inner.physicalBlockExponent,
    unmappedReadsZero: inner.unmappedReadsZero,
    read: (lba, into, signal) => inner.read(lba, into, signal),
    write: (lba, data, options, signal) => inner.write(lba, data, options, signal),
    flush: (signal) => inner.flush(signal),
  };
  const { discard, writeZeroes, mappingStatus } = inner;
  if (discard) view.discard = (lba, blocks, signal) => discard.call(inner, lba, blocks, signal);
  if (writeZeroes) view.writeZeroes = (lba, blocks, signal) => writeZeroes.call(inner, lba, blocks, signal);
  if (mappingStatus) {
    view.mappingStatus = (lba, maxBlocks) =>
      mappingStatus.call(inner, lba, Math.min(maxBlocks, blockCount - lba));
  }
  return view;
}

/** `tcmufile serve`'s device: the image through the file backend, on loopback (plus iSCSI). */
export async function openImageDevice(request: DeviceRequest): Promise<ServedDevice> {
  const file = await FileBackend.open(request.image.path, {
    blockSize: request.blockSize,
    readOnly: request.readOnly,
    io: request.io,
  });
  try {
    const sized = prefixView(file, request.image.size / request.blockSize);
    const backend = request.readOnly ? new ReadOnlyBackend(sized) : sized;
    const fabric: OpenDeviceOptions['fabric'] = request.iscsi
      ? [{ type: 'loopback' }, { type: 'iscsi', portal: formatPortal(request.iscsi) }]
      : { type: 'loopback' };
    const device = await openDevice({
      name: request.name,
      backend,
      nodeDir: request.nodeDir,
      fabric,
      logger: request.logger,
      ...(request.queueDepth === undefined ? {} : { queueDepth: request.queueDepth }),
    });
    return {
      get diskPath() {
        return device.diskPath;
      },
      get nodePath() {
        return device.nodePath;
      },
      stats: () => device.stats(),
      close: async (options) => {
        try {
          await device.close(options);
        } finally {
          await file.close();
        }
      },
      on: (event, listener) => device.on(event, listener),
    };
  } catch (error) {
    await file.close();
    throw error;
  }
}

function formatPortal(portal: { host: string; port: number }): string {
  return portal.host.includes(':') ? `[${portal.host}]:${portal.port}` : `${portal.host}:${portal.port}`;
}
