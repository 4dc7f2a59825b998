import type { CommandContext, OpcodeEntry } from '../core/command.js';
import { be64, putBe64 } from '../core/bytes.js';
import { invalidCdbField, ScsiCheckCondition } from '../core/errors.js';
import { acquireRange, checkLbaRange, readBlocks, writeBlocks } from '../core/io.js';

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
 */
const compareAndWrite = async (ctx: CommandContext<CompareAndWriteFields>): Promise<undefined> => {
  const { unit, fields: f, signal } = ctx;
  // SBC-4 5.3: zero blocks is not an error; nothing is read, compared or written.
  if (f.blocks === 0) return undefined;
  if (f.blocks > unit.config.maxCompareAndWriteBlocks) throw invalidCdbField(13);
  checkLbaRange(unit, f.lba, f.blocks);
  const bytes = f.blocks * unit.backend.blockSize;
  if (ctx.dataOut.length < 2 * bytes) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  const verify = ctx.dataOut.subarray(0, bytes);
  const write = ctx.dataOut.subarray(bytes, 2 * bytes);
  const release = await acquireRange(unit, f.lba, f.blocks, 'exclusive', signal);
  try {
    const current = new Uint8Array(bytes);
    await readBlocks(unit, f.lba, current, signal);
    const offset = firstDifference(current, verify);
    // INFORMATION = offset in bytes of the first miscompare within the verify data.
    if (offset >= 0)
      throw new ScsiCheckCondition('MISCOMPARE_DURING_VERIFY_OPERATION', { information: offset });
    await writeBlocks(unit, f.lba, write, f.fua, signal);
  } finally {
    release();
  }
  return undefined;
};

const compareAndWriteEntry: OpcodeEntry<CompareAndWriteFields> = {
  opcode: 0x89,
  name: 'COMPARE AND WRITE',
  cdbLength: 16,
  direction: 'out',
  // WRPROTECT and GROUP NUMBER are not supported; bytes 10-12 are reserved.
  usage: [0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0x00, CONTROL],
  decode,
  encode,
  dataOutLength: (f, unit) => 2 * f.blocks * unit.backend.blockSize,
  handler: compareAndWrite,
  writes: true,
};

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const compareAndWriteCommands: OpcodeEntry<any>[] = [compareAndWriteEntry];
