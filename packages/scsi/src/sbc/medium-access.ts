import { writeFailureReason } from '../core/backend.js';
import type { CommandContext, LogicalUnitState } from '../core/command.js';
import { ScsiCheckCondition } from '../core/errors.js';
import { flushBackend, readBlocks, withRangeLock, writeBlocks } from '../core/io.js';

/**
 * Medium access the SBC extras (WRITE SAME, UNMAP, FORMAT UNIT, EXTENDED COPY)
 * add to core/io.ts: zeroing, deallocation and chunking.
 */

/** FUA, or a disabled write cache (WCE=0), require the data to be durable before GOOD. */
export const mustPersist = (unit: LogicalUnitState, fua: boolean): boolean =>
  fua || !unit.modes.writeCacheEnabled;

const lbaOf = (error: unknown, fallback: number): number => {
  const lba = (error as { lba?: unknown } | null)?.lba;
  return typeof lba === 'number' ? lba : fallback;
};

/** Run a backend call that modifies the medium (discard, write zeroes); failures become WRITE ERROR. */
export const modifyMedium = async (
  lba: number,
  signal: AbortSignal | undefined,
  operation: () => void | Promise<void>,
): Promise<void> => {
  try {
    await operation();
  } catch (error) {
    if (ScsiCheckCondition.isInstance(error) || signal?.aborted) throw error;
    throw new ScsiCheckCondition(writeFailureReason(error), { information: lbaOf(error, lba), cause: error });
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
      await writeBlocks(unit, at, zeros.subarray(0, n * backend.blockSize), options.fua, signal);
    }
    return; // writeBlocks already honoured FUA / WCE=0
  }
  if (mustPersist(unit, options.fua)) await flushBackend(unit, signal);
};

/**
 * Read the command's blocks under an EXCLUSIVE range lock and hand them to `modify`, which
 * writes while the lock is held: an uninterrupted read-modify-write no other command can
 * see or change half-way (COMPARE AND WRITE, ORWRITE, WRITE ATOMIC). 0 blocks: nothing.
 */
export async function readModifyWrite(
  ctx: CommandContext<{ readonly lba: number; readonly blocks: number }>,
  modify: (current: Uint8Array) => Promise<void>,
): Promise<undefined> {
  const { unit, signal } = ctx;
  const { lba, blocks } = ctx.fields;
  if (blocks === 0) return undefined;
  await withRangeLock(
    unit,
    lba,
    blocks,
    'exclusive',
    async () => {
      const current = new Uint8Array(blocks * unit.backend.blockSize);
      await readBlocks(unit, lba, current, signal);
      await modify(current);
    },
    signal,
  );
  return undefined;
}
