import { punchHole } from '@tcmu/ring';
import { type FileBackendOptions, FileBackend as ScsiFileBackend } from '@tcmu/scsi/node';

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

/** @tcmu/scsi's file backend (positional I/O, fdatasync on flush and FUA). */
export type FileBackend = ScsiFileBackend;

/**
 * Opens an image file as a backend whose discard (UNMAP, WRITE SAME with
 * UNMAP) punches holes through the ring addon (fallocate PUNCH_HOLE |
 * KEEP_SIZE), so a sparse image gets its space back. Pass `punchHole` to
 * override (e.g. a filesystem without hole punching).
 */
export const FileBackend = {
  open(path: string, options: FileBackendOptions): Promise<FileBackend> {
    return ScsiFileBackend.open(path, { punchHole, ...options });
  },
};
