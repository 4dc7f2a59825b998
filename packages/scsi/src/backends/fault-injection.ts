import {
  BackendIoError,
  type BlockBackend,
  type LbaExtent,
  type ProvisioningUsage,
  type WriteOptions,
} from '../core/backend.js';
import { BackendWrapper } from './wrapper.js';

/** Which LBAs fail: a predicate, or a set / list of LBAs. */
export type LbaSelector = ((lba: number) => boolean) | ReadonlySet<number> | readonly number[];

export interface FaultInjectionOptions {
  /** Reads touching a selected LBA fail with BackendIoError carrying that LBA. */
  readonly failReads?: LbaSelector;
  /** Writes (and write-zeroes / discards) touching a selected LBA fail likewise. */
  readonly failWrites?: LbaSelector;
  /** Flushes fail. */
  readonly failFlush?: boolean;
  /**
   * The injected failures are transient (BackendIoError.transient: storage out of reach,
   * answered BUSY for the initiator to retry) instead of medium errors.
   */
  readonly transient?: boolean;
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
 * (the SCSI layer reports MEDIUM ERROR with the failing LBA), or a store out of reach
 * (`transient`: BUSY). Every call is
 * asynchronous, and the file underneath is never offered for direct I/O.
 */
export class FaultInjectionBackend extends BackendWrapper {
  readonly #failRead: ((lba: number) => boolean) | undefined;
  readonly #failWrite: ((lba: number) => boolean) | undefined;
  readonly #latencyMs: number;
  readonly #failFlush: boolean;
  readonly #transient: boolean;

  constructor(inner: BlockBackend, options: FaultInjectionOptions = {}) {
    super(inner);
    this.#failRead = toPredicate(options.failReads);
    this.#failWrite = toPredicate(options.failWrites);
    this.#transient = options.transient === true;
    this.#latencyMs = options.latencyMs ?? 0;
    this.#failFlush = options.failFlush ?? false;
  }

  /** Injected faults must be seen: no direct file access around them. */
  override get directFile(): undefined {
    return undefined;
  }

  /** Every call is asynchronous here (and faults must be seen). */
  override get synchronous(): undefined {
    return undefined;
  }

  /** The latency honours the signal. */
  override get ignoresSignal(): boolean | undefined {
    return this.#latencyMs > 0 ? false : this.inner.ignoresSignal;
  }

  override async read(lba: number, into: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.#enter(signal);
    this.#check(this.#failRead, lba, into.length / this.blockSize, 'read');
    await this.inner.read(lba, into, signal);
  }

  protected override async readvInner(lba: number, into: readonly Uint8Array[], signal?: AbortSignal) {
    await this.#enter(signal);
    this.#check(this.#failRead, lba, totalLength(into) / this.blockSize, 'read');
    await this.inner.readv!(lba, into, signal);
  }

  override async write(
    lba: number,
    data: Uint8Array,
    options: WriteOptions,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.#enter(signal);
    this.#check(this.#failWrite, lba, data.length / this.blockSize, 'write');
    await this.inner.write(lba, data, options, signal);
  }

  protected override async writevInner(
    lba: number,
    data: readonly Uint8Array[],
    options: WriteOptions,
    signal?: AbortSignal,
  ) {
    await this.#enter(signal);
    this.#check(this.#failWrite, lba, totalLength(data) / this.blockSize, 'write');
    await this.inner.writev!(lba, data, options, signal);
  }

  override async flush(signal?: AbortSignal): Promise<void> {
    await this.#enter(signal);
    if (this.#failFlush) {
      throw new BackendIoError('injected flush failure', undefined, { transient: this.#transient });
    }
    await this.inner.flush(signal);
  }

  protected override async discardInner(lba: number, blocks: number, signal?: AbortSignal) {
    await this.#enter(signal);
    this.#check(this.#failWrite, lba, blocks, 'discard');
    await this.inner.discard!(lba, blocks, signal);
  }

  protected override async writeZeroesInner(lba: number, blocks: number, signal?: AbortSignal) {
    await this.#enter(signal);
    this.#check(this.#failWrite, lba, blocks, 'write zeroes');
    await this.inner.writeZeroes!(lba, blocks, signal);
  }

  protected override async prefetchInner(lba: number, blocks: number, signal?: AbortSignal) {
    await this.#enter(signal);
    this.#check(this.#failRead, lba, blocks, 'prefetch');
    await this.inner.prefetch!(lba, blocks, signal);
  }

  protected override async mappingStatusInner(lba: number, maxBlocks: number): Promise<LbaExtent> {
    await this.#enter();
    return this.inner.mappingStatus!(lba, maxBlocks);
  }

  protected override async provisioningUsageInner(): Promise<ProvisioningUsage> {
    await this.#enter();
    return this.inner.provisioningUsage!();
  }

  async #enter(signal?: AbortSignal): Promise<void> {
    if (this.#latencyMs > 0) await delay(this.#latencyMs, signal);
  }

  /** Throw for the first selected LBA in [lba, lba + blocks). */
  #check(fails: ((lba: number) => boolean) | undefined, lba: number, blocks: number, op: string): void {
    if (fails === undefined) return;
    for (let at = lba; at < lba + blocks; at++) {
      if (fails(at)) {
        throw new BackendIoError(`injected ${op} failure at LBA ${at}`, at, { transient: this.#transient });
      }
    }
  }
}

const totalLength = (segments: readonly Uint8Array[]): number => {
  let total = 0;
  for (const segment of segments) total += segment.length;
  return total;
};
