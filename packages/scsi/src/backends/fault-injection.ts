import { BackendIoError, type BlockBackend, type LbaExtent, type WriteOptions } from '../core/backend.js';

/** Which LBAs fail: a predicate, or a set / list of LBAs. */
export type LbaSelector = ((lba: number) => boolean) | ReadonlySet<number> | readonly number[];

export interface FaultInjectionOptions {
  /** Reads touching a selected LBA fail with BackendIoError carrying that LBA. */
  readonly failReads?: LbaSelector;
  /** Writes (and write-zeroes / discards) touching a selected LBA fail likewise. */
  readonly failWrites?: LbaSelector;
  /** Flushes fail. */
  readonly failFlush?: boolean;
  /** Delay before every operation, in milliseconds (makes concurrency observable). */
  readonly latencyMs?: number;
}

const toPredicate = (selector: LbaSelector | undefined): ((lba: number) => boolean) | undefined => {
  if (selector === undefined) return undefined;
  if (typeof selector === 'function') return selector;
  const set = selector instanceof Set ? selector : new Set(selector as readonly number[]);
  return (lba) => set.has(lba);
};

const delay = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });

/**
 * Wraps a backend and makes chosen blocks fail, or every call slow: for
 * testing how filesystems, databases and initiators cope with bad sectors
 * (the SCSI layer reports MEDIUM ERROR with the failing LBA).
 */
export class FaultInjectionBackend implements BlockBackend {
  readonly discard?: (lba: number, blocks: number, signal?: AbortSignal) => Promise<void>;
  readonly writeZeroes?: (lba: number, blocks: number, signal?: AbortSignal) => Promise<void>;
  readonly mappingStatus?: (lba: number, maxBlocks: number) => Promise<LbaExtent>;
  readonly #failRead: ((lba: number) => boolean) | undefined;
  readonly #failWrite: ((lba: number) => boolean) | undefined;
  readonly #latencyMs: number;
  readonly #failFlush: boolean;

  constructor(
    readonly inner: BlockBackend,
    options: FaultInjectionOptions = {},
  ) {
    this.#failRead = toPredicate(options.failReads);
    this.#failWrite = toPredicate(options.failWrites);
    this.#latencyMs = options.latencyMs ?? 0;
    this.#failFlush = options.failFlush ?? false;
    const { discard, writeZeroes, mappingStatus } = inner;
    if (discard !== undefined) {
      this.discard = async (lba, blocks, signal) => {
        await this.#enter(signal);
        this.#check(this.#failWrite, lba, blocks, 'discard');
        await discard.call(inner, lba, blocks, signal);
      };
    }
    if (writeZeroes !== undefined) {
      this.writeZeroes = async (lba, blocks, signal) => {
        await this.#enter(signal);
        this.#check(this.#failWrite, lba, blocks, 'write zeroes');
        await writeZeroes.call(inner, lba, blocks, signal);
      };
    }
    if (mappingStatus !== undefined) {
      this.mappingStatus = async (lba, maxBlocks) => {
        await this.#enter();
        return mappingStatus.call(inner, lba, maxBlocks);
      };
    }
  }

  get blockSize(): number {
    return this.inner.blockSize;
  }
  get blockCount(): number {
    return this.inner.blockCount;
  }
  get readOnly(): boolean | undefined {
    return this.inner.readOnly;
  }
  get physicalBlockExponent(): number | undefined {
    return this.inner.physicalBlockExponent;
  }
  get unmappedReadsZero(): boolean | undefined {
    return this.inner.unmappedReadsZero;
  }

  async read(lba: number, into: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.#enter(signal);
    this.#check(this.#failRead, lba, into.length / this.blockSize, 'read');
    await this.inner.read(lba, into, signal);
  }

  async write(lba: number, data: Uint8Array, options: WriteOptions, signal?: AbortSignal): Promise<void> {
    await this.#enter(signal);
    this.#check(this.#failWrite, lba, data.length / this.blockSize, 'write');
    await this.inner.write(lba, data, options, signal);
  }

  async flush(signal?: AbortSignal): Promise<void> {
    await this.#enter(signal);
    if (this.#failFlush) throw new BackendIoError('injected flush failure');
    await this.inner.flush(signal);
  }

  async #enter(signal?: AbortSignal): Promise<void> {
    if (this.#latencyMs > 0) await delay(this.#latencyMs, signal);
  }

  /** Throw for the first selected LBA in [lba, lba + blocks). */
  #check(fails: ((lba: number) => boolean) | undefined, lba: number, blocks: number, op: string): void {
    if (fails === undefined) return;
    for (let at = lba; at < lba + blocks; at++) {
      if (fails(at)) throw new BackendIoError(`injected ${op} failure at LBA ${at}`, at);
    }
  }
}
