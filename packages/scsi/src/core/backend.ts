import { ScsiError } from './scsi-error.js';

/**
 * The storage a logical unit is emulated over. Addresses are logical blocks.
 * The contract (docs/backends.md says it at length):
 *
 * - **Synchronous when you can.** A method that has finished returns (void or
 *   a value), it does not return a promise: the unit then answers the command
 *   in the same turn, without allocating one. Return a promise only for work
 *   that really waits.
 * - **Buffers are lent.** `into`, `data` and their segments may be the
 *   transport's memory (the TCMU ring's data area). Use them only until the
 *   call settles; once it has, never touch them again.
 * - **Errors.** A thrown/rejected error becomes MEDIUM ERROR (reads:
 *   UNRECOVERED READ ERROR, writes: WRITE ERROR); a `BackendIoError` may carry
 *   the failing LBA.
 * - **Capabilities** are the optional members below: present means offered.
 *   Wrappers forward all of them (BackendWrapper) unless they change what one means.
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
  /**
   * The data is exactly this file, block `lba` at byte `lba * blockSize`, read
   * and written on the calling thread with nothing in between (no cache of its
   * own, no transformation): a transport may serve plain READ/WRITE on it
   * directly (the TCMU ring's native lane). Wrappers that change what reads or
   * writes do must not forward it.
   */
  readonly directFile?: DirectFile;
  /**
   * `read`, `readv`, and `write` and `writev` without `fua`, finish before they
   * return (never a promise): a transport may call them for plain READ/WRITE itself, without a
   * command object (the TCMU ring's lane on the JS thread). Wrappers that change
   * what reads or writes do must not forward it.
   */
  readonly synchronous?: boolean;

  /** Fill `into` (blocks * blockSize bytes) from `lba`. */
  read(lba: number, into: Uint8Array, signal?: AbortSignal): void | Promise<void>;
  /** Fill the segments in order, as one contiguous read from `lba` (a scatter list). */
  readv?(lba: number, into: readonly Uint8Array[], signal?: AbortSignal): void | Promise<void>;
  /** Write `data` (blocks * blockSize bytes) at `lba`; `fua`: durable before resolving. */
  write(lba: number, data: Uint8Array, options: WriteOptions, signal?: AbortSignal): void | Promise<void>;
  /** Write the segments in order, as one contiguous write at `lba` (a gather list). */
  writev?(
    lba: number,
    data: readonly Uint8Array[],
    options: WriteOptions,
    signal?: AbortSignal,
  ): void | Promise<void>;
  /** Make every completed write durable (SYNCHRONIZE CACHE, WCE=0). */
  flush(signal?: AbortSignal): void | Promise<void>;
  /** Deallocate blocks (UNMAP, WRITE SAME with UNMAP). Absent: thin provisioning not offered. */
  discard?(lba: number, blocks: number, signal?: AbortSignal): void | Promise<void>;
  /** Write zeroes efficiently (WRITE SAME of a zero block, FORMAT UNIT). */
  writeZeroes?(lba: number, blocks: number, signal?: AbortSignal): void | Promise<void>;
  /** Mapping status of the extent starting at `lba` (GET LBA STATUS). */
  mappingStatus?(lba: number, maxBlocks: number): LbaExtent | Promise<LbaExtent>;
  /**
   * Change `blockCount` (online resize). Absent: the capacity is fixed. Growing
   * must make the new blocks readable (as zeros) before it resolves; whether a
   * shrink keeps the cut-off data is the backend's to say.
   */
  resize?(blockCount: number): void | Promise<void>;
  /**
   * Bring blocks into the backend's cache so later reads of them come from memory
   * (PRE-FETCH). Present: the backend has such a cache. Absent: PRE-FETCH has nowhere to
   * put them and answers GOOD instead of CONDITION MET.
   */
  prefetch?(lba: number, blocks: number, signal?: AbortSignal): void | Promise<void>;
  /**
   * How much storage the blocks take and how much is left (LOG SENSE Logical
   * Block Provisioning page). Absent: the page is not offered.
   */
  provisioningUsage?(): ProvisioningUsage | Promise<ProvisioningUsage>;
}

/** See BlockBackend.provisioningUsage. */
export interface ProvisioningUsage {
  /** Blocks whose data takes storage (mapped LBAs, or the image's allocated bytes in blocks). */
  readonly mappedBlocks: number;
  /** Blocks' worth of storage still free for mapping, when known. */
  readonly availableBlocks?: number;
  /** The free storage is shared with others (a filesystem's free space), not the unit's own. */
  readonly availableShared?: boolean;
}

/** See BlockBackend.directFile. */
export interface DirectFile {
  readonly fd: number;
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

/**
 * An I/O failure a backend reports; `lba` lands in the sense INFORMATION field.
 * `spaceExhausted`: the write failed for lack of space (ENOSPC, EDQUOT under a sparse
 * image), answered DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT, not WRITE ERROR.
 * `transient`: the storage could not be reached for now (a network store's timeout or lost
 * connection) and the same command may succeed later: answered BUSY, not a medium error.
 */
export class BackendIoError extends ScsiError {
  static override readonly brand: string = '@tcmu/scsi.BackendIoError';
  override readonly name = 'BackendIoError';
  readonly spaceExhausted: boolean;
  readonly transient: boolean;
  constructor(
    message: string,
    readonly lba?: number,
    options?: ErrorOptions & { readonly spaceExhausted?: boolean; readonly transient?: boolean },
  ) {
    super(message, options);
    this.spaceExhausted = options?.spaceExhausted ?? false;
    this.transient = options?.transient ?? false;
  }
}

/**
 * True when a command failed because its backend's storage was out of reach for now: a
 * transient BackendIoError, or a CHECK CONDITION a handler raised for one (its `cause`).
 * LogicalUnit answers such a command with status BUSY and no sense (SAM-5 5.3.1), which
 * initiators retry (Linux: scsi_decide_disposition requeues it until the request's deadline),
 * as LIO answers TCM_LUN_BUSY (transport_generic_request_failure). A MEDIUM ERROR would tell
 * the initiator the blocks are bad; a file system would stop on it.
 */
export function isTransientBackendFailure(error: unknown): boolean {
  if (BackendIoError.isInstance(error)) return error.transient;
  const cause = (error as { cause?: unknown } | null)?.cause;
  return ScsiError.isInstance(error) && BackendIoError.isInstance(cause) && cause.transient;
}

/** The sense reason for a failed write (every write path uses it): no space to map, or WRITE ERROR. */
export function writeFailureReason(error: unknown): 'SPACE_ALLOCATION_FAILED_WRITE_PROTECT' | 'WRITE_ERROR' {
  return BackendIoError.isInstance(error) && error.spaceExhausted
    ? 'SPACE_ALLOCATION_FAILED_WRITE_PROTECT'
    : 'WRITE_ERROR';
}
