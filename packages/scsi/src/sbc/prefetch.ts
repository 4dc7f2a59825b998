import type { CommandContext, HandlerOutput, OpcodeEntry, StatusOutput } from '../core/command.js';
import { invalidCdbField } from '../core/errors.js';
import { checkLbaRange, isPromise, prefetchBlocks, runDetached } from '../core/io.js';
import { ScsiStatus } from '../core/status.js';
import { type CacheRangeFields, cacheRangeEntry } from './sync-cache.js';

/** PRE-FETCH(10/16), SBC-4 5.9-5.10: the fields are SYNCHRONIZE CACHE's (PREFETCH LENGTH 0: to the end). */
export type PrefetchFields = CacheRangeFields;

export const PRE_FETCH_10 = 0x34;
export const PRE_FETCH_16 = 0x90;

const CONDITION_MET: StatusOutput = Object.freeze({ status: ScsiStatus.CONDITION_MET });

/**
 * SBC-4 5.9: the blocks go to the backend's cache (BlockBackend.prefetch), taken to hold
 * MAXIMUM PREFETCH LENGTH blocks. CONDITION MET when the range fits: once it is read, or
 * at once with IMMED. GOOD when it does not: PREFETCH LENGTH 0 (to the last block) asking
 * for more gets as many as fit, and a backend without a cache holds none, so nothing is read.
 */
function prefetch(
  ctx: CommandContext<PrefetchFields>,
  lengthByte: number,
): HandlerOutput | Promise<HandlerOutput> {
  const { lba, blocks, immediate } = ctx.fields;
  const unit = ctx.unit;
  const capacity = unit.config.maxPrefetchBlocks;
  // Block Limits VPD: a PREFETCH LENGTH above MAXIMUM PREFETCH LENGTH is not accepted.
  if (capacity > 0 && blocks > capacity) throw invalidCdbField(lengthByte);
  checkLbaRange(unit, lba, blocks);
  if (unit.backend.prefetch === undefined) return undefined;
  const wanted = blocks === 0 ? unit.backend.blockCount - lba : blocks;
  const fits = capacity === 0 || wanted <= capacity;
  const count = fits ? wanted : capacity;
  const answer = fits ? CONDITION_MET : undefined;
  if (count === 0) return answer;
  if (immediate) {
    runDetached(unit, 'PRE-FETCH (IMMED)', () => prefetchBlocks(unit, lba, count));
    return answer;
  }
  const done = prefetchBlocks(unit, lba, count, ctx.signal);
  return isPromise(done) ? done.then(() => answer) : answer;
}

export const prefetchCommands: OpcodeEntry<PrefetchFields>[] = [
  cacheRangeEntry(PRE_FETCH_10, 'PRE-FETCH(10)', 10, prefetch),
  cacheRangeEntry(PRE_FETCH_16, 'PRE-FETCH(16)', 16, prefetch),
];
