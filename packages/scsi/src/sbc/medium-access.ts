import type { LogicalUnitState } from '../core/command.js';
import { ScsiCheckCondition } from '../core/errors.js';

/**
 * Medium access shared by the SBC extras (WRITE SAME, UNMAP, COMPARE AND
 * WRITE, FORMAT UNIT, EXTENDED COPY): range checks, durability and the
 * mapping of backend failures to MEDIUM ERROR sense.
 */

/** SBC-4 4.5: [lba, lba + blocks) must lie on the medium; overflow-safe. */
export const checkLbaRange = (unit: LogicalUnitState, lba: number, blocks: number): void => {
  const capacity = unit.backend.blockCount;
  if (!(lba >= 0) || lba > capacity || blocks > capacity - lba) {
    throw new ScsiCheckCondition('LBA_OUT_OF_RANGE');
  }
};

/** FUA, or a disabled write cache (WCE=0), require the data to be durable before GOOD. */
export const mustPersist = (unit: LogicalUnitState, fua: boolean): boolean =>
  fua || !unit.modes.writeCacheEnabled;

const lbaOf = (error: unknown, fallback: number): number => {
  const lba = (error as { lba?: unknown } | null)?.lba;
  return typeof lba === 'number' ? lba : fallback;
};

const asMediumError = (
  error: unknown,
  reason: 'UNRECOVERED_READ_ERROR' | 'WRITE_ERROR',
  lba: number,
  signal: AbortSignal | undefined,
): unknown => {
  if (error instanceof ScsiCheckCondition || signal?.aborted) return error;
  return new ScsiCheckCondition(reason, { information: lbaOf(error, lba), cause: error });
};

export const readMedium = async (
  unit: LogicalUnitState,
  lba: number,
  into: Uint8Array,
  signal?: AbortSignal,
): Promise<void> => {
  try {
    await unit.backend.read(lba, into, signal);
  } catch (error) {
    throw asMediumError(error, 'UNRECOVERED_READ_ERROR', lba, signal);
  }
};

export const writeMedium = async (
  unit: LogicalUnitState,
  lba: number,
  data: Uint8Array,
  fua: boolean,
  signal?: AbortSignal,
): Promise<void> => {
  try {
    await unit.backend.write(lba, data, { fua: mustPersist(unit, fua) }, signal);
  } catch (error) {
    throw asMediumError(error, 'WRITE_ERROR', lba, signal);
  }
};

/** Make completed writes durable (after discard / write-zeroes, which carry no FUA). */
export const flushMedium = async (
  unit: LogicalUnitState,
  lba: number,
  signal?: AbortSignal,
): Promise<void> => {
  try {
    await unit.backend.flush(signal);
  } catch (error) {
    throw asMediumError(error, 'WRITE_ERROR', lba, signal);
  }
};

/** Run a backend operation that modifies the medium (discard, write zeroes). */
export const modifyMedium = async (
  lba: number,
  signal: AbortSignal | undefined,
  operation: () => void | Promise<void>,
): Promise<void> => {
  try {
    await operation();
  } catch (error) {
    throw asMediumError(error, 'WRITE_ERROR', lba, signal);
  }
};

/** Largest buffer (bytes) the extras allocate for one backend call. */
export const CHUNK_BYTES = 1024 * 1024;

/** Blocks per chunk for a block size (at least one block). */
export const chunkBlocks = (blockSize: number): number => Math.max(1, Math.floor(CHUNK_BYTES / blockSize));

/** True when every byte is zero. */
export const isZero = (bytes: Uint8Array): boolean => {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
};

/**
 * Write zeroes over [lba, lba + blocks): deallocate when unmapped blocks read
 * as zero and `deallocate` is allowed, else writeZeroes, else plain writes.
 */
export const zeroMedium = async (
  unit: LogicalUnitState,
  lba: number,
  blocks: number,
  options: { readonly deallocate: boolean; readonly fua: boolean; readonly signal?: AbortSignal },
): Promise<void> => {
  const backend = unit.backend;
  const { signal } = options;
  if (options.deallocate && backend.discard !== undefined && backend.unmappedReadsZero === true) {
    await modifyMedium(lba, signal, () => backend.discard!(lba, blocks, signal));
  } else if (backend.writeZeroes !== undefined) {
    await modifyMedium(lba, signal, () => backend.writeZeroes!(lba, blocks, signal));
  } else {
    const step = chunkBlocks(backend.blockSize);
    const zeros = new Uint8Array(Math.min(step, blocks) * backend.blockSize);
    for (let at = lba; at < lba + blocks; at += step) {
      const n = Math.min(step, lba + blocks - at);
      await writeMedium(unit, at, zeros.subarray(0, n * backend.blockSize), options.fua, signal);
    }
    return; // writeMedium already honoured FUA / WCE=0
  }
  if (mustPersist(unit, options.fua)) await flushMedium(unit, lba, signal);
};
