import { be16, be32, be64, putBe16, putBe32, putBe64 } from '../core/bytes.js';
import type { CommandContext, OpcodeEntry } from '../core/command.js';
import { checkLbaRange, flushBackend, isPromise } from '../core/io.js';

/** SYNCHRONIZE CACHE(10/16), SBC-4 5.27-5.28. */
export interface SyncCacheFields {
  readonly lba: number;
  /** 0: from `lba` to the end of the medium. */
  readonly blocks: number;
  /** IMMED: GOOD once the CDB is validated, before the flush completes. */
  readonly immediate: boolean;
  readonly group: number;
}

export const SYNCHRONIZE_CACHE_10 = 0x35;
export const SYNCHRONIZE_CACHE_16 = 0x91;

/** The backend flushes everything; the range is validated (SBC-4 5.27: LBA OUT OF RANGE). */
function synchronizeCache(ctx: CommandContext<SyncCacheFields>): undefined | Promise<undefined> {
  const { lba, blocks, immediate } = ctx.fields;
  const unit = ctx.unit;
  checkLbaRange(unit, lba, blocks);
  if (immediate) {
    // Errors can no longer reach the initiator; they are logged.
    try {
      const pending = flushBackend(unit);
      if (isPromise(pending)) {
        pending.catch((error: unknown) =>
          unit.logger.error({ err: error }, 'SYNCHRONIZE CACHE (IMMED) failed'),
        );
      }
    } catch (error) {
      unit.logger.error({ err: error }, 'SYNCHRONIZE CACHE (IMMED) failed');
    }
    return undefined;
  }
  const flushed = flushBackend(unit, ctx.signal);
  return isPromise(flushed) ? flushed.then(() => undefined) : undefined;
}

export const syncCacheCommands: OpcodeEntry<SyncCacheFields>[] = [
  {
    opcode: SYNCHRONIZE_CACHE_10,
    name: 'SYNCHRONIZE CACHE(10)',
    cdbLength: 10,
    direction: 'none',
    usage: [SYNCHRONIZE_CACHE_10, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00],
    decode: (cdb) => ({
      lba: be32(cdb, 2),
      blocks: be16(cdb, 7),
      immediate: (cdb[1]! & 0x02) !== 0,
      group: cdb[6]! & 0x3f,
    }),
    encode(f) {
      const cdb = new Uint8Array(10);
      cdb[0] = SYNCHRONIZE_CACHE_10;
      cdb[1] = f.immediate ? 0x02 : 0;
      putBe32(cdb, 2, f.lba);
      cdb[6] = f.group;
      putBe16(cdb, 7, f.blocks);
      return cdb;
    },
    handler: synchronizeCache,
    mediumAccess: true,
    timeouts: { nominal: 30, recommended: 60 },
  },
  {
    opcode: SYNCHRONIZE_CACHE_16,
    name: 'SYNCHRONIZE CACHE(16)',
    cdbLength: 16,
    direction: 'none',
    usage: [
      SYNCHRONIZE_CACHE_16,
      0x02,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0x3f,
      0x00,
    ],
    decode: (cdb) => ({
      lba: be64(cdb, 2),
      blocks: be32(cdb, 10),
      immediate: (cdb[1]! & 0x02) !== 0,
      group: cdb[14]! & 0x3f,
    }),
    encode(f) {
      const cdb = new Uint8Array(16);
      cdb[0] = SYNCHRONIZE_CACHE_16;
      cdb[1] = f.immediate ? 0x02 : 0;
      putBe64(cdb, 2, f.lba);
      putBe32(cdb, 10, f.blocks);
      cdb[14] = f.group;
      return cdb;
    },
    handler: synchronizeCache,
    mediumAccess: true,
    timeouts: { nominal: 30, recommended: 60 },
  },
];
