import type { CommandContext, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { be64, putBe64 } from '../core/bytes.js';
import { invalidCdbField, ScsiCheckCondition } from '../core/errors.js';
import { checkLbaRange, writeBlocks } from '../core/io.js';
import { readModifyWrite } from './medium-access.js';

const CONTROL = 0x00;

/** COMPARE AND WRITE fields (SBC-4 5.3). */
export interface CompareAndWriteFields {
  readonly lba: number;
  /** NUMBER OF LOGICAL BLOCKS: the Data-Out buffer carries twice this many blocks. */
  readonly blocks: number;
  readonly dpo: boolean;
  readonly fua: boolean;
  readonly control: number;
}

const decode = (cdb: Uint8Array): CompareAndWriteFields => ({
  lba: be64(cdb, 2),
  blocks: cdb[13]!,
  dpo: (cdb[1]! & 0x10) !== 0,
  fua: (cdb[1]! & 0x08) !== 0,
  control: cdb[15]!,
});

const encode = (f: CompareAndWriteFields): Uint8Array => {
  const cdb = new Uint8Array(16);
  cdb[0] = 0x89;
  cdb[1] = (f.dpo ? 0x10 : 0) | (f.fua ? 0x08 : 0);
  putBe64(cdb, 2, f.lba);
  cdb[13] = f.blocks;
  cdb[15] = f.control;
  return cdb;
};

/** Offset of the first byte where `a` and `b` differ, or -1. */
export const firstDifference = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
};

/**
 * SBC-4 5.3: under an exclusive range lock (atomic against every other
 * command touching those blocks), read the blocks, compare them with the
 * verify half of the Data-Out buffer, and only if equal write the second half.
 * Zero blocks is not an error: nothing is read, compared or written.
 */
const compareAndWrite = (ctx: CommandContext<CompareAndWriteFields>): Promise<undefined> =>
  readModifyWrite(ctx, async (current) => {
    // The executor delivers exactly the verify blocks then the write blocks.
    const bytes = current.length;
    const offset = firstDifference(current, ctx.dataOut.subarray(0, bytes));
    // INFORMATION = offset in bytes of the first miscompare within the verify data.
    if (offset >= 0)
      throw new ScsiCheckCondition('MISCOMPARE_DURING_VERIFY_OPERATION', { information: offset });
    await writeBlocks(ctx.unit, ctx.fields.lba, ctx.dataOut.subarray(bytes), ctx.fields.fua, ctx.signal);
  });

/**
 * Checked before any Data-Out is needed: NUMBER OF LOGICAL BLOCKS above the Block Limits VPD
 * MAXIMUM COMPARE AND WRITE LENGTH is INVALID FIELD IN CDB at byte 13 (SBC-4 5.3), whatever
 * the initiator sent; then the range.
 */
function compareAndWriteDataOutLength(f: CompareAndWriteFields, unit: LogicalUnitState): number {
  if (f.blocks > unit.config.maxCompareAndWriteBlocks) throw invalidCdbField(13);
  checkLbaRange(unit, f.lba, f.blocks);
  return 2 * f.blocks * unit.backend.blockSize;
}

const compareAndWriteEntry: OpcodeEntry<CompareAndWriteFields> = {
  opcode: 0x89,
  name: 'COMPARE AND WRITE',
  cdbLength: 16,
  direction: 'out',
  // WRPROTECT and GROUP NUMBER are not supported; bytes 10-12 are reserved.
  usage: [0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0x00, CONTROL],
  decode,
  encode,
  dataOutLength: compareAndWriteDataOutLength,
  handler: compareAndWrite,
  // MAXIMUM COMPARE AND WRITE LENGTH 0 says the command is not supported.
  supported: (unit) => unit.config.maxCompareAndWriteBlocks > 0,
  writes: true,
};

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const compareAndWriteCommands: OpcodeEntry<any>[] = [compareAndWriteEntry];
