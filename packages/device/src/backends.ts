import { lockFile, punchHole } from '@tcmu/ring';
import { FileBackend, FileBackendError, type FileBackendOptions } from '@tcmu/scsi/node';

export {
  BackendWrapper,
  FaultInjectionBackend,
  type FaultInjectionOptions,
  type LbaSelector,
  MemoryBackend,
  type MemoryBackendOptions,
  ReadOnlyBackend,
} from '@tcmu/scsi';
export { FileBackendError, type FileBackendOptions } from '@tcmu/scsi/node';

/** @tcmu/scsi's file backend (positional I/O, fdatasync on flush and FUA); open it with openFileBackend. */
export type { FileBackend };

export interface DeviceFileBackendOptions extends FileBackendOptions {
  /**
   * Lock the image for this open (F_OFD_SETLK): exclusive, or shared when read-only,
   * so two servers can never serve one image (a restarted server after the old one
   * died, whose lock died with it, can). Default true.
   */
  readonly lock?: boolean;
}

/**
 * Opens an image file as a backend whose discard (UNMAP, WRITE SAME with
 * UNMAP) punches holes through the ring addon (fallocate PUNCH_HOLE |
 * KEEP_SIZE), so a sparse image gets its space back, and locks the image.
 * Pass `punchHole` to override (e.g. a filesystem without hole punching).
 * @throws FileBackendError with code LOCKED when another open holds the image
 */
export async function openFileBackend(path: string, options: DeviceFileBackendOptions): Promise<FileBackend> {
  const { lock = true, ...rest } = options;
  const backend = await FileBackend.open(path, { punchHole, ...rest });
  if (!lock) return backend;
  try {
    lockFile(backend.fd, { exclusive: !backend.readOnly });
  } catch (error) {
    await backend.close();
    if ((error as { code?: unknown }).code !== 'EAGAIN') throw error;
    throw new FileBackendError(
      'LOCKED',
      `${path} is ${backend.readOnly ? 'being written' : 'in use'} by another server (its lock is held); stop that one first`,
      { cause: error },
    );
  }
  return backend;
}
