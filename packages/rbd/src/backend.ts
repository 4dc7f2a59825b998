import { getSystemErrorMap } from 'node:util';
import { BackendIoError, type BlockBackend, type LbaExtent, type WriteOptions } from '@tcmu/scsi';
import { RbdClosedError, RbdNativeError, RbdOptionError } from './errors.js';
import {
  loadAddon,
  type NativeCallback,
  type NativeImage,
  type NativeOpenParams,
  type NativeStat,
} from './native.js';

/** Options of RbdBackend.open(). */
export interface RbdOpenOptions {
  /** The RADOS pool of the image. */
  readonly pool: string;
  readonly image: string;
  /** A RADOS namespace inside the pool (default: none). */
  readonly namespace?: string;
  /** Serve this snapshot of the image, read-only. */
  readonly snapshot?: string;
  /** ceph.conf (default: librados's search: $CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf). */
  readonly conf?: string;
  /** The cephx user without "client." (default: admin). */
  readonly clientId?: string;
  /** The keyring with that user's key (default: the conf file's, else /etc/ceph/ceph.client.<id>.keyring...). */
  readonly keyring?: string;
  /** Open read-only (writes answered WRITE PROTECTED); implied by `snapshot`. */
  readonly readOnly?: boolean;
  /** Logical block size: 512 (default), 1024, 2048 or 4096. */
  readonly blockSize?: number;
  /**
   * Take the image's exclusive lock at open and keep it (rbd_lock_acquire): another client's
   * writes then fail instead of taking the lock over. Needs the exclusive-lock feature.
   * Default false: librbd takes the lock on the first write and hands it over when asked.
   */
  readonly exclusive?: boolean;
  /**
   * Seconds after which an operation on an unreachable OSD or mon fails with ETIMEDOUT
   * (rados_osd_op_timeout, rados_mon_op_timeout, client_mount_timeout). Default: the conf
   * file's, and 30 for the op timeouts the conf leaves at 0 (librados: wait forever).
   */
  readonly timeoutSeconds?: number;
  /** Any other librados/librbd option, set after the conf file (rados_conf_set). */
  readonly config?: Readonly<Record<string, string | number | boolean>>;
}

const BLOCK_SIZES = [512, 1024, 2048, 4096];
/** One GET LBA STATUS looks this far ahead at most (256 objects of the object map). */
const MAX_STATUS_BYTES = 1 << 30;
const DEFAULT_OP_TIMEOUT = '30';
const EILSEQ = -84;
const systemErrors = getSystemErrorMap();

interface Pending {
  readonly resolve: (value: number) => void;
  readonly reject: (error: unknown) => void;
  readonly what: string;
  readonly call: string;
  readonly lba: number | undefined;
  readonly offset: number;
  readonly bytes: number;
}

const callback =
  <T>(resolve: (value: T) => void, reject: (error: unknown) => void): NativeCallback<T> =>
  (error, value) =>
    error ? reject(RbdNativeError.from(error)) : resolve(value);

function checkOptions(options: RbdOpenOptions): void {
  for (const key of ['pool', 'image'] as const) {
    if (typeof options[key] !== 'string' || options[key] === '') {
      throw new RbdOptionError(`${key} must be a non-empty string`);
    }
  }
  if (options.blockSize !== undefined && !BLOCK_SIZES.includes(options.blockSize)) {
    throw new RbdOptionError(`blockSize must be one of ${BLOCK_SIZES.join(', ')} (got ${options.blockSize})`);
  }
  const timeout = options.timeoutSeconds;
  if (timeout !== undefined && !(timeout > 0 && Number.isFinite(timeout))) {
    throw new RbdOptionError(`timeoutSeconds must be a positive number of seconds (got ${timeout})`);
  }
}

function openParams(options: RbdOpenOptions): NativeOpenParams {
  const timeout = options.timeoutSeconds === undefined ? undefined : String(options.timeoutSeconds);
  const timeouts = ['rados_osd_op_timeout', 'rados_mon_op_timeout'];
  return {
    conf: options.conf ?? '',
    clientId: options.clientId ?? '',
    keyring: options.keyring ?? '',
    pool: options.pool,
    namespace: options.namespace ?? '',
    image: options.image,
    snapshot: options.snapshot ?? '',
    readOnly: options.readOnly === true,
    exclusive: options.exclusive === true,
    settings: [
      // A discard that does not cover whole discard granules zeroes them instead of skipping
      // them, so discarded blocks always read back as zeros (LBPRZ, unmappedReadsZero).
      ['rbd_skip_partial_discard', 'false'],
      // No librbd cache, as tcmu-runner's rbd handler (tcmu_rbd_image_open): the unit keeps the
      // SCSI write-cache semantics (FUA, SYNCHRONIZE CACHE become flushes either way), and the
      // cache layer costs every command (docs/benchmarks.md, RBD). `config` may turn it on.
      ['rbd_cache', 'false'],
      ...(timeout === undefined
        ? []
        : [...timeouts, 'client_mount_timeout'].map((key) => [key, timeout] as const)),
      ...Object.entries(options.config ?? {}).map(([key, value]) => [key, String(value)] as const),
    ],
    fallbacks: timeout === undefined ? timeouts.map((key) => [key, DEFAULT_OP_TIMEOUT] as const) : [],
  };
}

/**
 * An RBD image (Ceph's RADOS block device) as a BlockBackend, through librbd's asynchronous
 * C API: every call returns a promise that settles when librbd completes it (completions
 * reach the event loop in batches, never blocking it). Failures reject with BackendIoError
 * (its `lba` the first block of the call, `cause` the RbdNativeError with librbd's errno).
 *
 * Beyond the BlockBackend contract: `writeSame` (rbd_aio_writesame), `compareAndWrite`
 * (rbd_aio_compare_and_write, atomic on the OSD: installRbdCommands() answers COMPARE AND
 * WRITE with it), `refresh()` and `onResize()` (the size follows the image's).
 */
export class RbdBackend implements BlockBackend {
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** Discarded blocks read as zeros unless `config` sets rbd_skip_partial_discard. */
  readonly unmappedReadsZero: boolean;
  /** librbd calls cannot be cancelled: the signal is never looked at. */
  readonly ignoresSignal = true;
  /** RADOS object size of the image in bytes (4 MiB by default). */
  readonly objectSize: number;
  /** pool[/namespace]/image[@snapshot] */
  readonly name: string;
  /** The longest compareAndWrite librbd takes: one 512-byte sector in librbd 16 (Ceph Pacific). */
  readonly compareAndWriteMaxBytes = 512;

  readonly #native: NativeImage;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<(blockCount: number) => void>();
  #size: number;
  #nextId = 1;
  #closed: Promise<void> | undefined;
  #idle: (() => void) | undefined;
  /** The last refresh started or queued, and the one queued behind a running one. */
  #refreshing: Promise<boolean> | undefined;
  #queuedRefresh: Promise<boolean> | undefined;
  /** mappingStatus queries on the threadpool: close() waits for them. */
  readonly #queries = new Set<Promise<Float64Array>>();

  private constructor(native: NativeImage, stat: NativeStat, options: RbdOpenOptions) {
    this.#native = native;
    this.#size = stat.size;
    this.objectSize = stat.objectSize;
    this.blockSize = options.blockSize ?? 512;
    this.readOnly = options.readOnly === true || options.snapshot !== undefined;
    this.unmappedReadsZero = String(options.config?.rbd_skip_partial_discard ?? false) === 'false';
    const ns = options.namespace ? `${options.namespace}/` : '';
    this.name = `${options.pool}/${ns}${options.image}${options.snapshot ? `@${options.snapshot}` : ''}`;
  }

  /**
   * Connects to the cluster and opens the image (on the threadpool: connecting waits for
   * the mon, at most client_mount_timeout).
   * @throws RbdNativeError (code ENOENT: no such pool or image; ETIMEDOUT: no mon answered;
   * EACCES/EPERM: cephx refused), RbdOptionError, RbdAddonLoadError
   */
  static async open(options: RbdOpenOptions): Promise<RbdBackend> {
    checkOptions(options);
    let backend: RbdBackend | undefined;
    const native = new (loadAddon().Image)((results, updated) => {
      if (backend !== undefined) backend.#completed(results, updated);
    });
    const stat = await new Promise<NativeStat>((resolve, reject) => {
      native.open(openParams(options), callback(resolve, reject));
    }).catch((error: unknown) => {
      if (!RbdNativeError.isInstance(error)) throw error;
      throw new RbdNativeError(
        `cannot open rbd image ${options.pool}/${options.image}: ${error.message}`,
        error,
        {
          cause: error,
        },
      );
    });
    backend = new RbdBackend(native, stat, options);
    return backend;
  }

  /** Number of logical blocks: the image's size (as last seen) over the block size. */
  get blockCount(): number {
    return Math.floor(this.#size / this.blockSize);
  }

  /** The image's size in bytes, as last seen. */
  get size(): number {
    return this.#size;
  }

  read(lba: number, into: Uint8Array): Promise<void> {
    return this.#submit('read', lba, 'rbd_aio_read', (id, at) => this.#native.read(id, at, into));
  }

  readv(lba: number, into: readonly Uint8Array[]): Promise<void> {
    return this.#submit('read', lba, 'rbd_aio_readv', (id, at) => this.#native.readv(id, at, into));
  }

  /** FUA: LIBRADOS_OP_FLAG_FADVISE_FUA, which librbd's write-around cache (if `config` turns it on) writes through. */
  write(lba: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    return this.#submit('write', lba, 'rbd_aio_write2', (id, at) =>
      this.#native.write(id, at, data, options.fua),
    );
  }

  /** rbd_aio_writev takes no flags: FUA is a flush after it. */
  async writev(lba: number, data: readonly Uint8Array[], options: WriteOptions): Promise<void> {
    await this.#submit('write', lba, 'rbd_aio_writev', (id, at) => this.#native.writev(id, at, data));
    if (options.fua) await this.flush();
  }

  /** rbd_aio_flush: every completed write is on the OSDs (librbd's cache, if any, written back). */
  flush(): Promise<void> {
    return this.#submit('flush', undefined, 'rbd_aio_flush', (id) => this.#native.flush(id));
  }

  /** rbd_aio_discard: whole objects are removed, the rest zeroed (see unmappedReadsZero). */
  discard(lba: number, blocks: number): Promise<void> {
    const length = blocks * this.blockSize;
    return this.#submit('discard', lba, 'rbd_aio_discard', (id, at) => this.#native.discard(id, at, length));
  }

  /** rbd_aio_write_zeroes: zeros that read back as zeros, deallocating whole objects. */
  writeZeroes(lba: number, blocks: number): Promise<void> {
    const length = blocks * this.blockSize;
    return this.#submit('write zeroes', lba, 'rbd_aio_write_zeroes', (id, at) =>
      this.#native.writeZeroes(id, at, length),
    );
  }

  /** rbd_aio_writesame: `block` (blockSize bytes) written to each of `blocks` blocks from `lba`. */
  writeSame(lba: number, blocks: number, block: Uint8Array): Promise<void> {
    if (block.length !== this.blockSize) {
      return Promise.reject(new RbdOptionError(`writeSame needs one block of ${this.blockSize} bytes`));
    }
    const length = blocks * this.blockSize;
    return this.#submit('write same', lba, 'rbd_aio_writesame', (id, at) =>
      this.#native.writeSame(id, at, length, block),
    );
  }

  /**
   * rbd_aio_compare_and_write: if the blocks from `lba` equal `compare`, write `data` there,
   * atomically on the OSD (against every client of the image). Resolves -1 when written,
   * else the offset in `compare` of its first byte that differs (nothing written). librbd 16
   * (Ceph Pacific) takes at most one 512-byte sector (compareAndWriteMaxBytes) and refuses
   * more with EINVAL.
   */
  compareAndWrite(
    lba: number,
    compare: Uint8Array,
    data: Uint8Array,
    options?: WriteOptions,
  ): Promise<number> {
    return this.#submit<number>(
      'compare and write',
      lba,
      'rbd_aio_compare_and_write',
      (id, at) => this.#native.compareAndWrite(id, at, compare, data, options?.fua === true),
      compare.length,
    );
  }

  /**
   * Reads the image's size again (rbd_stat, which refreshes the header) and resolves whether it
   * changed. The stat starts after every earlier refresh; calls while one waits share it.
   * librbd's header watch calls it by itself when another client resizes the image.
   */
  refresh(): Promise<boolean> {
    if (this.#closed) return Promise.reject(new RbdClosedError(`${this.name} is closed`));
    if (this.#queuedRefresh) return this.#queuedRefresh;
    const previous = this.#refreshing;
    const next = (async () => {
      if (previous) await previous.catch(() => {});
      this.#queuedRefresh = undefined;
      const stat = await new Promise<NativeStat>((resolve, reject) =>
        this.#native.stat(callback(resolve, reject)),
      );
      if (stat.size === this.#size) return false;
      this.#size = stat.size;
      for (const listener of this.#listeners) listener(this.blockCount);
      return true;
    })();
    if (previous) this.#queuedRefresh = next;
    this.#refreshing = next;
    const done = () => {
      if (this.#refreshing === next) this.#refreshing = undefined;
    };
    next.then(done, done);
    return next;
  }

  /** Calls `listener` with the new block count after each change of the image's size; returns the unsubscribe. */
  onResize(listener: (blockCount: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * GET LBA STATUS: the extent from `lba` that is allocated (an RBD object exists there) or not
   * (no object: it reads as zeros). From librbd's object map through rbd_diff_iterate2 with
   * whole objects, so no data is listed or read; an object partly written counts as mapped
   * (conservative: SBC-4 lets mapped blocks read as anything, deallocated ones must read zeros).
   */
  async mappingStatus(lba: number, maxBlocks: number): Promise<LbaExtent> {
    if (this.#closed) throw new RbdClosedError(`${this.name} is closed`);
    const { blockSize } = this;
    const blocks = Math.max(1, Math.min(maxBlocks, this.blockCount - lba, MAX_STATUS_BYTES / blockSize));
    const start = lba * blockSize;
    const end = start + blocks * blockSize;
    const query = new Promise<Float64Array>((resolve, reject) =>
      this.#native.allocation(start, end - start, callback(resolve, reject)),
    );
    this.#queries.add(query);
    let triples: Float64Array;
    try {
      triples = await query;
    } catch (error) {
      throw new BackendIoError(`rbd_diff_iterate2 failed on ${this.name}`, lba, {
        cause: RbdNativeError.from(error),
      });
    } finally {
      this.#queries.delete(query);
    }
    // Allocated extents come in offset order, clipped here to the query. Either one covers
    // `start` (mapped, through the run of extents that touch it) or the first one ends the
    // deallocated extent.
    let mappedTo = -1;
    for (let i = 0; i < triples.length; i += 3) {
      if (triples[i + 2] !== 1) continue;
      const from = Math.max(start, triples[i]!);
      const to = Math.min(end, triples[i]! + triples[i + 1]!);
      if (to <= from) continue;
      if (mappedTo < 0 && from > start)
        return { lba, blocks: Math.max(1, Math.floor(from / blockSize) - lba), state: 'deallocated' };
      if (mappedTo >= 0 && from > mappedTo) break;
      mappedTo = Math.max(mappedTo, to);
    }
    if (mappedTo >= 0) return { lba, blocks: Math.ceil(mappedTo / blockSize) - lba, state: 'mapped' };
    return { lba, blocks, state: 'deallocated' };
  }

  /** Waits for the calls in flight, then closes the image and the cluster connection. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#pending.size > 0) {
        await new Promise<void>((resolve) => {
          this.#idle = resolve;
        });
      }
      await Promise.allSettled([...this.#queries]);
      await this.#refreshing?.catch(() => {});
      await new Promise<undefined>((resolve, reject) => this.#native.close(callback(resolve, reject)));
    })();
    return this.#closed;
  }

  /**
   * Starts one librbd call: `start(id, byteOffset)` submits it. Resolves when librbd completes
   * it: with nothing, or for compare-and-write (`bytes` compared) with -1 or the miscompare offset.
   */
  #submit<T = void>(
    what: string,
    lba: number | undefined,
    call: string,
    start: (id: number, at: number) => void,
    bytes = 0,
  ): Promise<T> {
    if (this.#closed) {
      const cause = new RbdClosedError(`${this.name} is closed`);
      return Promise.reject(new BackendIoError(`rbd ${what} on ${this.name}: closed`, lba, { cause }));
    }
    const id = this.#nextId++;
    const offset = (lba ?? 0) * this.blockSize;
    return new Promise<T>((resolve, reject) => {
      try {
        start(id, offset);
      } catch (error) {
        reject(this.#ioError(what, lba, RbdNativeError.from(error)));
        return;
      }
      const settle = resolve as (value: number) => void;
      this.#pending.set(id, { resolve: settle, reject, what, call, lba, offset, bytes });
    });
  }

  /** A batch of completions from the addon: (id, return value, mismatch offset) triples. */
  #completed(results: Float64Array, updated: boolean): void {
    for (let i = 0; i < results.length; i += 3) {
      const pending = this.#pending.get(results[i]!);
      if (pending === undefined) continue;
      this.#pending.delete(results[i]!);
      const ret = results[i + 1]!;
      if (ret >= 0) pending.resolve(-1);
      else if (ret === EILSEQ && pending.call === 'rbd_aio_compare_and_write') {
        pending.resolve(this.#miscompareAt(results[i + 2]!, pending));
      } else {
        const [code, text] = systemErrors.get(ret) ?? [`E${-ret}`, 'unknown error'];
        const cause = new RbdNativeError(`${pending.call}: ${code} (${text})`, {
          code,
          errno: ret,
          syscall: pending.call,
        });
        pending.reject(this.#ioError(pending.what, pending.lba, cause));
      }
    }
    if (this.#pending.size === 0) this.#idle?.();
    if (updated && !this.#closed) this.refresh().catch(() => {});
  }

  /**
   * The offset in the compare data of librbd's mismatch offset: the image offset of the
   * differing byte, except that librbd 16 gives the start of the RADOS object in the image
   * plus the offset in the compare data (it maps the OSD's buffer offset as an object offset).
   */
  #miscompareAt(mismatch: number, pending: Pending): number {
    if (mismatch >= pending.offset && mismatch < pending.offset + pending.bytes)
      return mismatch - pending.offset;
    return mismatch - Math.floor(pending.offset / this.objectSize) * this.objectSize;
  }

  #ioError(what: string, lba: number | undefined, cause: unknown): BackendIoError {
    const where = lba === undefined ? '' : ` at LBA ${lba}`;
    const code = (cause as { code?: unknown }).code;
    return new BackendIoError(
      `rbd ${what}${where} on ${this.name} failed: ${(cause as Error).message}`,
      lba,
      {
        cause,
        spaceExhausted: code === 'ENOSPC' || code === 'EDQUOT',
        // rados_osd_op_timeout expired: no OSD (or mon) answered, and the next try may (the
        // unit answers BUSY). ESHUTDOWN, blocklisted, is not: this client is fenced for good.
        transient: code === 'ETIMEDOUT',
      },
    );
  }
}
