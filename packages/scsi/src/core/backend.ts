/**
 * The storage a logical unit is emulated over. Addresses are logical blocks.
 * Methods may return synchronously (fast in-memory backends) or a promise.
 * A thrown/rejected error becomes MEDIUM ERROR (reads: UNRECOVERED READ ERROR,
 * writes: WRITE ERROR); a `BackendIoError` may carry the failing LBA.
 */
export interface BlockBackend {
  /** Logical block length in bytes (e.g. 512 or 4096). */
  readonly blockSize: number;
  /** Number of logical blocks (at most Number.MAX_SAFE_INTEGER). */
  readonly blockCount: number;
  /** Writes are refused with DATA PROTECT / WRITE PROTECTED. */
  readonly readOnly?: boolean;
  /** Physical block = blockSize << physicalBlockExponent (READ CAPACITY(16)). */
  readonly physicalBlockExponent?: number;
  /** Reads of unmapped blocks return zeros (LBPRZ). */
  readonly unmappedReadsZero?: boolean;
  /**
   * `read` and `write` never look at their signal (they complete synchronously,
   * or cannot be cancelled): READ and WRITE then pass none, so a transport's
   * lazy signal is never built. A command aborted meanwhile still ends TASK ABORTED.
   */
  readonly ignoresSignal?: boolean;

  /** Fill `into` (blocks * blockSize bytes) from `lba`. */
  read(lba: number, into: Uint8Array, signal?: AbortSignal): void | Promise<void>;
  /** Write `data` (blocks * blockSize bytes) at `lba`; `fua`: durable before resolving. */
  write(lba: number, data: Uint8Array, options: WriteOptions, signal?: AbortSignal): void | Promise<void>;
  /** Make every completed write durable (SYNCHRONIZE CACHE, WCE=0). */
  flush(signal?: AbortSignal): void | Promise<void>;
  /** Deallocate blocks (UNMAP, WRITE SAME with UNMAP). Absent: thin provisioning not offered. */
  discard?(lba: number, blocks: number, signal?: AbortSignal): void | Promise<void>;
  /** Write zeroes efficiently (WRITE SAME of a zero block, FORMAT UNIT). */
  writeZeroes?(lba: number, blocks: number, signal?: AbortSignal): void | Promise<void>;
  /** Mapping status of the extent starting at `lba` (GET LBA STATUS). */
  mappingStatus?(lba: number, maxBlocks: number): LbaExtent | Promise<LbaExtent>;
}

export interface WriteOptions {
  /** Force unit access: the data must be on stable storage when the call resolves. */
  readonly fua: boolean;
}

export interface LbaExtent {
  readonly lba: number;
  readonly blocks: number;
  readonly state: 'mapped' | 'deallocated' | 'anchored';
}

/** An I/O failure a backend reports; `lba` lands in the sense INFORMATION field. */
export class BackendIoError extends Error {
  override readonly name = 'BackendIoError';
  constructor(
    message: string,
    readonly lba?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
