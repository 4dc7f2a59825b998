import { be16, be32, be64, putBe16, putBe32, putBe64 } from '../core/bytes.js';
import type { CommandContext, CommandHandler, OpcodeEntry } from '../core/command.js';
import { checkLbaRange, flushBackend, isPromise, runDetached } from '../core/io.js';

/**
 * The CDB SYNCHRONIZE CACHE(10/16) and PRE-FETCH(10/16) share (SBC-4): IMMED, an LBA,
 * a number of blocks and the GROUP NUMBER, at the same places.
 */
export interface CacheRangeFields {
  readonly lba: number;
  /** 0: from `lba` to the end of the medium. */
  readonly blocks: number;
  /** IMMED: GOOD once the CDB is validated, before the operation completes. */
  readonly immediate: boolean;
  readonly group: number;
}

/** SYNCHRONIZE CACHE(10/16), SBC-4 5.27-5.28. */
export type SyncCacheFields = CacheRangeFields;

export const SYNCHRONIZE_CACHE_10 = 0x35;
export const SYNCHRONIZE_CACHE_16 = 0x91;

/** An entry with the shared CDB; `lengthByte` is where its number of blocks sits. */
export function cacheRangeEntry(
  opcode: number,
  name: string,
  cdbLength: 10 | 16,
  handler: (ctx: CommandContext<CacheRangeFields>, lengthByte: number) => ReturnType<CommandHandler>,
): OpcodeEntry<CacheRangeFields> {
  const short = cdbLength === 10;
  const lengthByte = short ? 7 : 10;
  const groupByte = short ? 6 : 14;
  const usage = new Array<number>(cdbLength).fill(0xff);
  usage[0] = opcode;
  usage[1] = 0x02;
  usage[groupByte] = 0x3f;
  usage[cdbLength - 1] = 0x00;
  return {
    opcode,
    name,
    cdbLength,
    direction: 'none',
    usage,
    decode: (cdb) => ({
      lba: short ? be32(cdb, 2) : be64(cdb, 2),
      blocks: short ? be16(cdb, lengthByte) : be32(cdb, lengthByte),
      immediate: (cdb[1]! & 0x02) !== 0,
      group: cdb[groupByte]! & 0x3f,
    }),
    encode(f) {
      const cdb = new Uint8Array(cdbLength);
      cdb[0] = opcode;
      cdb[1] = f.immediate ? 0x02 : 0;
      if (short) {
        putBe32(cdb, 2, f.lba);
        putBe16(cdb, lengthByte, f.blocks);
      } else {
        putBe64(cdb, 2, f.lba);
        putBe32(cdb, lengthByte, f.blocks);
      }
      cdb[groupByte] = f.group;
      return cdb;
    },
    handler: (ctx) => handler(ctx, lengthByte),
    mediumAccess: true,
    timeouts: { nominal: 30, recommended: 60 },
  };
}

/** The backend flushes everything; the range is validated (SBC-4 5.27: LBA OUT OF RANGE). */
function synchronizeCache(ctx: CommandContext<SyncCacheFields>): undefined | Promise<undefined> {
  const { lba, blocks, immediate } = ctx.fields;
  const unit = ctx.unit;
  checkLbaRange(unit, lba, blocks);
  if (immediate) {
    runDetached(unit, 'SYNCHRONIZE CACHE (IMMED)', () => flushBackend(unit));
    return undefined;
  }
  const flushed = flushBackend(unit, ctx.signal);
  return isPromise(flushed) ? flushed.then(() => undefined) : undefined;
}

export const syncCacheCommands: OpcodeEntry<SyncCacheFields>[] = [
  cacheRangeEntry(SYNCHRONIZE_CACHE_10, 'SYNCHRONIZE CACHE(10)', 10, synchronizeCache),
  cacheRangeEntry(SYNCHRONIZE_CACHE_16, 'SYNCHRONIZE CACHE(16)', 16, synchronizeCache),
];
