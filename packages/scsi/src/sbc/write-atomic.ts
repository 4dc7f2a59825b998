import { be16, putBe16 } from '../core/bytes.js';
import type { CommandContext, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { invalidCdbField } from '../core/errors.js';
import { checkLbaRange, writeBlocks } from '../core/io.js';
import { readModifyWrite } from './medium-access.js';
import { type ReadWriteFields, layout16, readWriteCodec } from './read-write.js';

/** WRITE ATOMIC(16) fields, SBC-4 5.48. */
export interface WriteAtomicFields extends ReadWriteFields {
  /** ATOMIC BOUNDARY: the write may be split at multiples of it (0: never). */
  readonly boundary: number;
}

export const WRITE_ATOMIC_16 = 0x9c;

/** Where the fields sit, for the field pointers. */
const LBA_BYTE = 2;
const BOUNDARY_BYTE = 10;
const LENGTH_BYTE = 12;

/** The unit offers WRITE ATOMIC(16) when its Block Limits VPD page advertises an atomic length. */
const offersAtomicWrites = (unit: LogicalUnitState): boolean =>
  unit.config.maxAtomicTransferBlocks > 0 || unit.config.maxAtomicTransferBlocksWithBoundary > 0;

/**
 * SBC-4 4.29: every Block Limits VPD atomic limit, checked before any Data-Out moves;
 * each violation is INVALID FIELD IN CDB at the field (as the target core's
 * sbc_check_atomic()). The LBA range is checked before the alignment, which needs an
 * LBA that exists.
 */
function atomicDataOutLength(f: WriteAtomicFields, unit: LogicalUnitState): number {
  const c = unit.config;
  if (f.boundary === 0) {
    if (f.blocks > c.maxAtomicTransferBlocks) throw invalidCdbField(LENGTH_BYTE);
  } else {
    // MAXIMUM ATOMIC BOUNDARY SIZE 0: no boundary is supported.
    if (f.boundary > c.maxAtomicBoundaryBlocks) throw invalidCdbField(BOUNDARY_BYTE);
    if (f.blocks > c.maxAtomicTransferBlocksWithBoundary) throw invalidCdbField(LENGTH_BYTE);
  }
  const granularity = c.atomicTransferLengthGranularity;
  if (granularity > 0) {
    if (f.blocks % granularity !== 0) throw invalidCdbField(LENGTH_BYTE);
    if (f.boundary % granularity !== 0) throw invalidCdbField(BOUNDARY_BYTE);
  }
  checkLbaRange(unit, f.lba, f.blocks);
  if (c.atomicAlignment > 0 && f.lba % c.atomicAlignment !== 0) throw invalidCdbField(LBA_BYTE);
  return f.blocks * unit.backend.blockSize;
}

/**
 * All or nothing: under an exclusive range lock no other command sees part of it, the
 * write is one backend call never cut short by an abort, and if it fails the blocks it
 * may have changed are written back (SBC-4 4.29.1). Across a crash only the backend can
 * keep it whole (see UnitConfig.maxAtomicTransferBlocks). The boundary is honoured by
 * never splitting at all.
 */
const writeAtomic = (ctx: CommandContext<WriteAtomicFields>): Promise<undefined> =>
  readModifyWrite(ctx, async (before) => {
    const { unit, fields } = ctx;
    try {
      await writeBlocks(unit, fields.lba, ctx.dataOut, fields.fua);
    } catch (error) {
      try {
        await writeBlocks(unit, fields.lba, before, fields.fua);
      } catch (restoreError) {
        unit.logger.error(
          { err: restoreError, lba: fields.lba },
          'WRITE ATOMIC could not restore the old data',
        );
      }
      throw error;
    }
  });

/** Its CDB is WRITE(16)'s with TRANSFER LENGTH cut to bytes 12-13 and ATOMIC BOUNDARY in 10-11. */
const write16 = readWriteCodec(WRITE_ATOMIC_16, layout16);

export const writeAtomicEntry: OpcodeEntry<WriteAtomicFields> = {
  opcode: WRITE_ATOMIC_16,
  name: 'WRITE ATOMIC(16)',
  cdbLength: 16,
  direction: 'out',
  usage: write16.usage,
  decode: (cdb) => ({
    ...write16.decode(cdb),
    boundary: be16(cdb, BOUNDARY_BYTE),
    blocks: be16(cdb, LENGTH_BYTE),
  }),
  encode(f) {
    const cdb = write16.encode!({ ...f, blocks: 0 });
    putBe16(cdb, BOUNDARY_BYTE, f.boundary);
    putBe16(cdb, LENGTH_BYTE, f.blocks);
    return cdb;
  },
  dataOutLength: atomicDataOutLength,
  handler: writeAtomic,
  supported: offersAtomicWrites,
  writes: true,
  mediumAccess: true,
  timeouts: { nominal: 10, recommended: 30 },
};
