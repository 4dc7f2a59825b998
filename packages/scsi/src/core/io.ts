import { writeFailureReason } from './backend.js';
import type { LogicalUnitState } from './command.js';
import { ScsiCheckCondition, invalidCdbField } from './errors.js';

/**
 * Backend access for handlers. Each helper keeps the backend's synchronous
 * answers synchronous (the hot path awaits nothing) and turns any backend
 * failure into the MEDIUM ERROR the command reports.
 */

/** A value, or a promise of it (helpers answer synchronously when the backend does). */
export type MaybePromise<T> = T | Promise<T>;

export const isPromise = <T>(v: MaybePromise<T>): v is Promise<T> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

const lbaOf = (error: unknown): number | undefined => {
  const lba = (error as { lba?: unknown } | null)?.lba;
  return typeof lba === 'number' ? lba : undefined;
};

const readError = (error: unknown) => {
  if (ScsiCheckCondition.isInstance(error)) return error;
  const lba = lbaOf(error);
  return new ScsiCheckCondition(
    'UNRECOVERED_READ_ERROR',
    lba === undefined ? { cause: error } : { information: lba, cause: error },
  );
};

const writeError = (error: unknown) => {
  if (ScsiCheckCondition.isInstance(error)) return error;
  const lba = lbaOf(error);
  return new ScsiCheckCondition(
    writeFailureReason(error),
    lba === undefined ? { cause: error } : { information: lba, cause: error },
  );
};

const rethrowRead = (error: unknown): never => {
  throw readError(error);
};
const rethrowWrite = (error: unknown): never => {
  throw writeError(error);
};

/** One buffer, or a scatter list of them (a transport's iovecs). */
export type DataBuffer = Uint8Array | readonly Uint8Array[];

export const isScatterList = (buffer: DataBuffer): buffer is readonly Uint8Array[] => Array.isArray(buffer);

export function byteLength(buffer: DataBuffer): number {
  if (!isScatterList(buffer)) return buffer.length;
  let total = 0;
  for (const segment of buffer) total += segment.length;
  return total;
}

/** Copies `bytes` into the scatter list from its start. */
export function scatterInto(segments: readonly Uint8Array[], bytes: Uint8Array): void {
  let at = 0;
  for (const segment of segments) {
    if (at >= bytes.length) return;
    const n = Math.min(segment.length, bytes.length - at);
    segment.set(bytes.subarray(at, at + n));
    at += n;
  }
}

/** The scatter list cut to its first `length` bytes (views, nothing copied). */
export function limitSegments(segments: readonly Uint8Array[], length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = length;
  for (const segment of segments) {
    if (left <= 0) break;
    out.push(segment.length <= left ? segment : segment.subarray(0, left));
    left -= segment.length;
  }
  return out;
}

/** The scatter list's first `length` bytes as one new buffer. */
export function gather(segments: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const segment of segments) {
    if (at >= length) break;
    const n = Math.min(segment.length, length - at);
    out.set(n === segment.length ? segment : segment.subarray(0, n), at);
    at += n;
  }
  return out;
}

/**
 * Read whole blocks into one buffer or a scatter list (the backend's readv,
 * else through a bounce buffer); failures become MEDIUM ERROR / UNRECOVERED
 * READ ERROR. Synchronous when the backend is.
 */
export function readBlocks(
  unit: LogicalUnitState,
  lba: number,
  into: DataBuffer,
  signal?: AbortSignal,
): MaybePromise<void> {
  const backend = unit.backend;
  let pending: MaybePromise<void>;
  try {
    if (!isScatterList(into)) pending = backend.read(lba, into, signal);
    else if (backend.readv !== undefined) pending = backend.readv(lba, into, signal);
    else {
      const bounce = new Uint8Array(byteLength(into));
      pending = backend.read(lba, bounce, signal);
      if (isPromise(pending)) pending = pending.then(() => scatterInto(into, bounce));
      else scatterInto(into, bounce);
    }
  } catch (error) {
    throw readError(error);
  }
  if (isPromise(pending)) return pending.then(undefined, rethrowRead);
}

/**
 * Write whole blocks from one buffer or a gather list (the backend's writev,
 * else gathered); failures become MEDIUM ERROR / WRITE ERROR. `fua`, or a
 * disabled write cache (caching page WCE=0), makes the data durable before
 * the command completes (SBC-4 4.11, 5.40). Synchronous when the backend is.
 */
export function writeBlocks(
  unit: LogicalUnitState,
  lba: number,
  data: DataBuffer,
  fua: boolean,
  signal?: AbortSignal,
): MaybePromise<void> {
  const backend = unit.backend;
  const options = fua || !unit.modes.writeCacheEnabled ? FUA : NO_FUA;
  let pending: MaybePromise<void>;
  try {
    if (!isScatterList(data)) pending = backend.write(lba, data, options, signal);
    else if (backend.writev !== undefined) pending = backend.writev(lba, data, options, signal);
    else pending = backend.write(lba, gather(data, byteLength(data)), options, signal);
  } catch (error) {
    throw writeError(error);
  }
  if (isPromise(pending)) return pending.then(undefined, rethrowWrite);
}

const FUA = Object.freeze({ fua: true });
const NO_FUA = Object.freeze({ fua: false });

/**
 * Bring blocks into the backend's cache (BlockBackend.prefetch, which must exist);
 * failures become MEDIUM ERROR / UNRECOVERED READ ERROR. Synchronous when the backend is.
 */
export function prefetchBlocks(
  unit: LogicalUnitState,
  lba: number,
  blocks: number,
  signal?: AbortSignal,
): MaybePromise<void> {
  let pending: MaybePromise<void>;
  try {
    pending = unit.backend.prefetch!(lba, blocks, signal);
  } catch (error) {
    throw readError(error);
  }
  if (isPromise(pending)) return pending.then(undefined, rethrowRead);
}

/** Run `operation` without waiting for it (IMMED): its failure can no longer reach the initiator, so it is logged. */
export function runDetached(unit: LogicalUnitState, what: string, operation: () => MaybePromise<void>): void {
  const logFailure = (error: unknown) => unit.logger.error({ err: error }, `${what} failed`);
  try {
    const pending = operation();
    if (isPromise(pending)) pending.catch(logFailure);
  } catch (error) {
    logFailure(error);
  }
}

/** Flush the backend's volatile cache; failures become MEDIUM ERROR / WRITE ERROR. */
export function flushBackend(unit: LogicalUnitState, signal?: AbortSignal): MaybePromise<void> {
  let pending: MaybePromise<void>;
  try {
    pending = unit.backend.flush(signal);
  } catch (error) {
    throw writeError(error);
  }
  if (isPromise(pending)) return pending.then(undefined, rethrowWrite);
}

/**
 * SBC-4 4.5: LBA + number of blocks must stay within the capacity; checked
 * without overflow (64-bit LBAs above 2^53 arrive as Infinity and fail too).
 */
export function checkLbaRange(unit: LogicalUnitState, lba: number, blocks: number): void {
  const capacity = unit.backend.blockCount;
  if (!(lba <= capacity) || !(blocks <= capacity - lba)) {
    throw new ScsiCheckCondition('LBA_OUT_OF_RANGE');
  }
}

/**
 * SBC-4 (Block Limits VPD): a transfer longer than MAXIMUM TRANSFER LENGTH
 * is INVALID FIELD IN CDB at the TRANSFER LENGTH field.
 */
export function checkTransferLength(unit: LogicalUnitState, blocks: number, lengthByte: number): void {
  const max = unit.config.maxTransferBlocks;
  if (max > 0 && blocks > max) throw invalidCdbField(lengthByte);
}

/** Thrown when a command is aborted while it waits; the executor answers TASK ABORTED. */
const abortReason = (signal: AbortSignal): unknown => signal.reason ?? new Error('aborted');

/**
 * Run `body` holding a range lock; the lock is released when `body` settles.
 * An uncontended lock and a synchronous body complete synchronously. A
 * command aborted while it waited for the lock gives it back untouched: an
 * aborted command never reaches the medium after the abort.
 */
export function withRangeLock<T>(
  unit: LogicalUnitState,
  lba: number,
  blocks: number,
  mode: 'shared' | 'exclusive',
  body: () => MaybePromise<T>,
  signal?: AbortSignal | (() => AbortSignal | undefined),
): MaybePromise<T> {
  const lock = unit.locks.lock(lba, blocks, mode);
  if (isPromise(lock)) {
    return lock.then((release) => {
      // A getter is read only here: an uncontended lock never builds the signal.
      const current = typeof signal === 'function' ? signal() : signal;
      if (current?.aborted) {
        release();
        throw abortReason(current);
      }
      return runLocked(release, body);
    });
  }
  return runLocked(lock, body);
}

/** Take a range lock (awaiting it); if the command was aborted meanwhile, give it back and throw. */
export async function acquireRange(
  unit: LogicalUnitState,
  lba: number,
  blocks: number,
  mode: 'shared' | 'exclusive',
  signal?: AbortSignal,
): Promise<() => void> {
  const release = await unit.locks.lock(lba, blocks, mode);
  if (signal?.aborted) {
    release();
    throw abortReason(signal);
  }
  return release;
}

function runLocked<T>(release: () => void, body: () => MaybePromise<T>): MaybePromise<T> {
  let result: MaybePromise<T>;
  try {
    result = body();
  } catch (error) {
    release();
    throw error;
  }
  if (isPromise(result)) return result.finally(release);
  release();
  return result;
}

// Below glibc's default mmap threshold (128 KiB): larger slabs were sometimes
// served by mmap/munmap, and the page faults cut READ(10) to a quarter (~260k/s).
const SLAB_BYTES = 64 * 1024;
const SLAB_MAX_REQUEST = 16 * 1024;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabOffset = 0;

/**
 * A Data-In buffer for a read. Small buffers are carved from a shared slab
 * (as Node's Buffer pool does): one ArrayBuffer allocation serves many reads,
 * which matters at hundreds of thousands of 4 KiB reads per second. Every
 * byte is new (a slab is never reused), and readers fill the whole buffer.
 */
export function allocateDataIn(bytes: number): Uint8Array {
  if (bytes > SLAB_MAX_REQUEST) return new Uint8Array(bytes);
  if (slabOffset + bytes > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabOffset = 0;
  }
  const view = new Uint8Array(slab, slabOffset, bytes);
  // Keep views 8-byte aligned so typed-array copies stay fast.
  slabOffset += (bytes + 7) & ~7;
  return view;
}
