import {
  constants,
  fstatSync,
  readSync,
  readvSync,
  type StatsFs,
  statfsSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { type FileHandle, open, statfs } from 'node:fs/promises';
import {
  BackendIoError,
  type BlockBackend,
  type DirectFile,
  type ProvisioningUsage,
  type WriteOptions,
} from '../core/backend.js';
import { ScsiError } from '../core/scsi-error.js';

/** Deallocates a byte range of an open file (fallocate PUNCH_HOLE | KEEP_SIZE), e.g. the ring addon's. */
export type PunchHole = (fd: number, offset: number, length: number) => void;

export interface FileBackendOptions {
  /** Logical block size in bytes; the file size must be a multiple of it. */
  readonly blockSize: number;
  /** Open read-only (writes are refused with DATA PROTECT at the SCSI layer). */
  readonly readOnly?: boolean;
  /** Create the file with this size in bytes if it does not exist (an existing file is used as is). */
  readonly create?: { readonly size: number };
  /** Deallocate ranges on discard; without it, discard writes zeroes. */
  readonly punchHole?: PunchHole;
  /**
   * How reads and writes reach the file. 'async' (default): fs/promises, one
   * libuv threadpool round trip per I/O, so a slow disk never blocks the event
   * loop. 'sync': pread/pwrite on the calling thread; for an image in the page
   * cache (or on tmpfs) they are a memory copy, far cheaper than the thread
   * handoff, but a cache miss on slow storage stalls every other command.
   * fdatasync (flush, FUA) always runs on the threadpool.
   */
  readonly io?: FileIoMode;
}

export type FileIoMode = 'async' | 'sync';

export type FileBackendErrorCode =
  | 'INVALID_OPTIONS'
  | 'NOT_FOUND'
  | 'OPEN_FAILED'
  | 'NOT_A_FILE'
  | 'EMPTY'
  | 'SIZE_NOT_BLOCK_MULTIPLE'
  /** Another open of the image holds a conflicting lock (a second server of one image). */
  | 'LOCKED';

/** Opening a FileBackend failed; `code` says why. */
export class FileBackendError extends ScsiError {
  static override readonly brand: string = '@tcmu/scsi.FileBackendError';
  override readonly name = 'FileBackendError';
  constructor(
    readonly code: FileBackendErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Largest buffer one zeroing or prefetching step uses. */
const CHUNK_BYTES = 1024 * 1024;

/**
 * A block device stored in a regular file (an image), through positional
 * reads and writes. FUA writes and flush use fdatasync.
 */
export class FileBackend implements BlockBackend {
  readonly blockSize: number;
  #blockCount: number;
  readonly readOnly: boolean;
  /** Discarded ranges read as zeros: punched holes, or zeroes written. */
  readonly unmappedReadsZero = true;
  /** Positional I/O cannot be cancelled once issued, so no signal is passed in. */
  readonly ignoresSignal = true;
  /** In 'sync' mode the file is read and written on the calling thread: a transport may do the same. */
  readonly directFile: DirectFile | undefined;
  readonly synchronous: boolean;
  readonly path: string;
  readonly #handle: FileHandle;
  readonly #punchHole: PunchHole | undefined;
  readonly #sync: boolean;
  #zeros: Uint8Array | undefined;
  /** The first fdatasync failure of this open, latched (see flush). */
  #flushFailure: unknown;

  private constructor(path: string, handle: FileHandle, blockCount: number, options: FileBackendOptions) {
    this.path = path;
    this.#handle = handle;
    this.blockSize = options.blockSize;
    this.#blockCount = blockCount;
    this.readOnly = options.readOnly ?? false;
    this.#punchHole = options.punchHole;
    this.#sync = options.io === 'sync';
    this.directFile = this.#sync ? { fd: handle.fd } : undefined;
    this.synchronous = this.#sync;
  }

  get blockCount(): number {
    return this.#blockCount;
  }

  /**
   * Online resize. Growing extends the file (ftruncate: sparse, reads as zeros) when it is
   * shorter; shrinking only serves fewer blocks: the bytes past the new end stay in the file
   * (as when a bigger image is served in part), so a later grow gives them back.
   */
  async resize(blockCount: number): Promise<void> {
    if (!Number.isSafeInteger(blockCount) || blockCount < 1) {
      throw new FileBackendError(
        'INVALID_OPTIONS',
        `blockCount must be a positive integer, got ${blockCount}`,
      );
    }
    if (this.readOnly) throw new BackendIoError(`${this.path} is open read-only: cannot resize`, 0);
    const bytes = blockCount * this.blockSize;
    if ((await this.#handle.stat()).size < bytes) await this.#handle.truncate(bytes);
    this.#blockCount = blockCount;
  }

  /** How reads and writes reach the file (see FileBackendOptions.io). */
  get io(): FileIoMode {
    return this.#sync ? 'sync' : 'async';
  }

  static async open(path: string, options: FileBackendOptions): Promise<FileBackend> {
    const { blockSize, create, readOnly = false, io } = options;
    if (!Number.isSafeInteger(blockSize) || blockSize < 1) {
      throw new FileBackendError('INVALID_OPTIONS', `blockSize must be a positive integer, got ${blockSize}`);
    }
    if (io !== undefined && io !== 'async' && io !== 'sync') {
      throw new FileBackendError('INVALID_OPTIONS', `io must be 'async' or 'sync', got ${String(io)}`);
    }
    if (create !== undefined) {
      if (readOnly) throw new FileBackendError('INVALID_OPTIONS', 'create and readOnly exclude each other');
      if (!Number.isSafeInteger(create.size) || create.size <= 0 || create.size % blockSize !== 0) {
        throw new FileBackendError(
          'INVALID_OPTIONS',
          `create.size must be a positive multiple of ${blockSize}, got ${create.size}`,
        );
      }
    }
    const handle = await FileBackend.#openHandle(path, readOnly, create?.size);
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new FileBackendError('NOT_A_FILE', `${path} is not a regular file`);
      if (stat.size === 0) throw new FileBackendError('EMPTY', `${path} is empty`);
      if (stat.size % blockSize !== 0) {
        throw new FileBackendError(
          'SIZE_NOT_BLOCK_MULTIPLE',
          `${path} is ${stat.size} bytes, not a multiple of the ${blockSize}-byte block`,
        );
      }
      return new FileBackend(path, handle, stat.size / blockSize, options);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  static async #openHandle(
    path: string,
    readOnly: boolean,
    createSize: number | undefined,
  ): Promise<FileHandle> {
    try {
      if (createSize !== undefined) {
        try {
          const created = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
          await created.truncate(createSize);
          return created;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        }
      }
      return await open(path, readOnly ? 'r' : 'r+');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT')
        throw new FileBackendError('NOT_FOUND', `${path} does not exist`, { cause: error });
      throw new FileBackendError('OPEN_FAILED', `cannot open ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /** The file descriptor (for punch-hole helpers). */
  get fd(): number {
    return this.#handle.fd;
  }

  read(lba: number, into: Uint8Array): void | Promise<void> {
    return this.#sync ? this.#readSync(lba, into) : this.#readAsync(lba, into);
  }

  readv(lba: number, into: readonly Uint8Array[]): void | Promise<void> {
    if (this.#sync) return this.#readSync(lba, into);
    return this.#readvAsync(lba, into);
  }

  /** preadv on the calling thread; returns nothing when done (the unit answers in the same turn). */
  #readSync(lba: number, into: Uint8Array | readonly Uint8Array[]): void {
    const position = lba * this.blockSize;
    let done = 0;
    try {
      done = transferSync(this.#handle.fd, position, into, false);
    } catch (error) {
      throw this.#readError(lba, position + ((error as { done?: number }).done ?? done), error);
    }
  }

  async #readvAsync(lba: number, into: readonly Uint8Array[]): Promise<void> {
    let position = lba * this.blockSize;
    for (const segment of into) {
      await this.#readAsync(lba, segment, position);
      position += segment.length;
    }
  }

  async #readAsync(lba: number, into: Uint8Array, position = lba * this.blockSize): Promise<void> {
    let done = 0;
    try {
      while (done < into.length) {
        const { bytesRead } = await this.#handle.read(into, done, into.length - done, position + done);
        if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
        done += bytesRead;
      }
    } catch (error) {
      throw this.#readError(lba, position + done, error);
    }
  }

  #readError(lba: number, position: number, error: unknown): BackendIoError {
    return new BackendIoError(
      `read at LBA ${lba} failed: ${(error as Error).message}`,
      this.#lbaAt(position),
      {
        cause: error,
      },
    );
  }

  write(lba: number, data: Uint8Array, options: WriteOptions): void | Promise<void> {
    if (!this.#sync) return this.#writeAsync(lba, data, options);
    this.#writeAtSync(lba * this.blockSize, data);
    return options.fua ? this.flush() : undefined;
  }

  writev(lba: number, data: readonly Uint8Array[], options: WriteOptions): void | Promise<void> {
    if (!this.#sync) return this.#writevAsync(lba, data, options);
    this.#writeAtSync(lba * this.blockSize, data);
    return options.fua ? this.flush() : undefined;
  }

  async #writevAsync(lba: number, data: readonly Uint8Array[], options: WriteOptions): Promise<void> {
    let position = lba * this.blockSize;
    for (const segment of data) {
      await this.#writeAt(position, segment);
      position += segment.length;
    }
    if (options.fua) await this.flush();
  }

  async #writeAsync(lba: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    await this.#writeAt(lba * this.blockSize, data);
    if (options.fua) await this.flush();
  }

  async flush(): Promise<void> {
    // Linux reports a writeback error to one fdatasync only; a later one may succeed although
    // the data is gone. So one failure fails every later flush (and FUA write) of this open.
    if (this.#flushFailure) {
      throw new BackendIoError('an earlier fdatasync failed: written data may be lost', undefined, {
        cause: this.#flushFailure,
      });
    }
    try {
      await this.#handle.datasync();
    } catch (error) {
      this.#flushFailure = error;
      throw new BackendIoError(`fdatasync failed: ${(error as Error).message}`, undefined, { cause: error });
    }
  }

  /** Deallocate by punching a hole when a punchHole helper was given, else write zeroes. */
  async discard(lba: number, blocks: number): Promise<void> {
    await this.writeZeroes(lba, blocks);
  }

  async writeZeroes(lba: number, blocks: number): Promise<void> {
    const offset = lba * this.blockSize;
    const length = blocks * this.blockSize;
    if (this.#punchHole !== undefined) {
      try {
        this.#punchHole(this.#handle.fd, offset, length);
        return;
      } catch (error) {
        throw new BackendIoError(`punching a hole at LBA ${lba} failed: ${(error as Error).message}`, lba, {
          cause: error,
        });
      }
    }
    this.#zeros ??= new Uint8Array(Math.min(CHUNK_BYTES, Math.max(length, this.blockSize)));
    const chunk = Math.floor(CHUNK_BYTES / this.blockSize) * this.blockSize || this.blockSize;
    for (let at = 0; at < length; at += chunk) {
      const n = Math.min(chunk, length - at);
      if (this.#zeros.length < n) this.#zeros = new Uint8Array(n);
      if (this.#sync) this.#writeAtSync(offset + at, this.#zeros.subarray(0, n));
      else await this.#writeAt(offset + at, this.#zeros.subarray(0, n));
    }
  }

  /**
   * The image's allocated bytes (st_blocks, 512-byte units) as mapped blocks, and the
   * free space of its filesystem (statfs), which other files share, as available blocks.
   */
  provisioningUsage(): ProvisioningUsage | Promise<ProvisioningUsage> {
    if (this.#sync) return this.#usage(fstatSync(this.#handle.fd).blocks, statfsSync(this.path));
    return Promise.all([this.#handle.stat(), statfs(this.path)]).then(([stat, filesystem]) =>
      this.#usage(stat.blocks, filesystem),
    );
  }

  #usage(allocatedSectors: number, filesystem: StatsFs): ProvisioningUsage {
    return {
      mappedBlocks: Math.min(this.blockCount, Math.ceil((allocatedSectors * 512) / this.blockSize)),
      availableBlocks: Math.floor((filesystem.bavail * filesystem.bsize) / this.blockSize),
      availableShared: true,
    };
  }

  /** Reads the range once, so the page cache holds it for the reads that follow (PRE-FETCH). */
  prefetch(lba: number, blocks: number): void | Promise<void> {
    const step = Math.max(1, Math.floor(CHUNK_BYTES / this.blockSize));
    const scratch = new Uint8Array(Math.min(blocks, step) * this.blockSize);
    const end = lba + blocks;
    const part = (at: number) => scratch.subarray(0, Math.min(step, end - at) * this.blockSize);
    if (this.#sync) {
      for (let at = lba; at < end; at += step) this.#readSync(at, part(at));
      return;
    }
    return (async () => {
      for (let at = lba; at < end; at += step) await this.#readAsync(at, part(at));
    })();
  }

  close(): Promise<void> {
    return this.#handle.close();
  }

  async #writeAt(position: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new BackendIoError('the file is open read-only', this.#lbaAt(position));
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.#handle.write(data, done, data.length - done, position + done);
        if (bytesWritten === 0) throw new Error(`no progress writing at byte ${position + done}`);
        done += bytesWritten;
      }
    } catch (error) {
      throw this.#writeError(position + done, error);
    }
  }

  #writeError(position: number, error: unknown): BackendIoError {
    const code = (error as { code?: unknown }).code;
    return new BackendIoError(`write failed: ${(error as Error).message}`, this.#lbaAt(position), {
      cause: error,
      spaceExhausted: code === 'ENOSPC' || code === 'EDQUOT',
    });
  }

  #writeAtSync(position: number, data: Uint8Array | readonly Uint8Array[]): void {
    if (this.readOnly) throw new BackendIoError('the file is open read-only', this.#lbaAt(position));
    try {
      transferSync(this.#handle.fd, position, data, true);
    } catch (error) {
      throw this.#writeError(position + ((error as { done?: number }).done ?? 0), error);
    }
  }

  #lbaAt(position: number): number {
    return Math.floor(position / this.blockSize);
  }
}

const totalLength = (segments: readonly Uint8Array[]): number => {
  let total = 0;
  for (const segment of segments) total += segment.length;
  return total;
};

/**
 * pread/pwrite (one buffer) or preadv/pwritev (a scatter list) of every byte at `position`,
 * resumed after short transfers. A failure carries `done`, the bytes moved before it.
 */
function transferSync(
  fd: number,
  position: number,
  data: Uint8Array | readonly Uint8Array[],
  write: boolean,
) {
  let done = 0;
  try {
    if (!Array.isArray(data) || data.length === 1) {
      const buffer: Uint8Array = Array.isArray(data) ? data[0]! : (data as Uint8Array);
      while (done < buffer.length) {
        const n = write
          ? writeSync(fd, buffer, done, buffer.length - done, position + done)
          : readSync(fd, buffer, done, buffer.length - done, position + done);
        if (n === 0)
          throw new Error(
            `${write ? 'no progress writing' : 'unexpected end of file'} at byte ${position + done}`,
          );
        done += n;
      }
      return done;
    }
    const list = data as readonly Uint8Array[];
    const total = totalLength(list);
    let segments = list;
    while (done < total) {
      const n = write
        ? writevSync(fd, segments as Uint8Array[], position + done)
        : readvSync(fd, segments as Uint8Array[], position + done);
      if (n === 0)
        throw new Error(
          `${write ? 'no progress writing' : 'unexpected end of file'} at byte ${position + done}`,
        );
      done += n;
      if (done < total) segments = remainder(list, done);
    }
    return done;
  } catch (error) {
    throw Object.assign(error as Error, { done });
  }
}

/** The segments after the first `skip` bytes (a short readv/writev continues there). */
function remainder(segments: readonly Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = skip;
  for (const segment of segments) {
    if (left >= segment.length) {
      left -= segment.length;
      continue;
    }
    out.push(left > 0 ? segment.subarray(left) : segment);
    left = 0;
  }
  return out;
}
