import { be16, be32, be64, putBe16, putBe32, putBe64 } from '../core/bytes.js';
import type { CommandContext, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { ScsiCheckCondition, invalidCdbField } from '../core/errors.js';
import { checkLbaRange, checkTransferLength, readBlocks, withRangeLock, writeBlocks } from '../core/io.js';

/** VERIFY(10/12/16) and WRITE AND VERIFY(10/12/16) (SBC-4). */
export interface VerifyFields {
  readonly lba: number;
  readonly blocks: number;
  readonly dpo: boolean;
  /** VRPROTECT / WRPROTECT (must be 0). */
  readonly protect: number;
  /**
   * BYTCHK: 0 = medium verification only, 1 = compare with the Data-Out
   * blocks, 3 = compare every block with the one Data-Out block (VERIFY only).
   */
  readonly byteCheck: number;
  readonly group: number;
}

export const VerifyOpcode = {
  VERIFY_10: 0x2f,
  VERIFY_12: 0xaf,
  VERIFY_16: 0x8f,
  WRITE_AND_VERIFY_10: 0x2e,
  WRITE_AND_VERIFY_12: 0xae,
  WRITE_AND_VERIFY_16: 0x8e,
} as const;

/** Blocks read per step while verifying, to bound memory on long ranges. */
const CHUNK_BYTES = 1 << 20;

const flags = (b1: number) => ({ protect: b1 >>> 5, dpo: (b1 & 0x10) !== 0, byteCheck: (b1 >>> 1) & 0x03 });
const flagByte = (f: VerifyFields) => ((f.protect & 7) << 5) | (f.dpo ? 0x10 : 0) | ((f.byteCheck & 3) << 1);

function checkFlags(f: VerifyFields, write: boolean): VerifyFields {
  if (f.protect !== 0) throw invalidCdbField(1, 7);
  // BYTCHK 10b is reserved; 11b exists only for VERIFY (SBC-4 WRITE AND VERIFY (10): reserved there).
  if (f.byteCheck === 2 || (write && f.byteCheck === 3)) throw invalidCdbField(1, 2);
  return f;
}

const miscompare = (offset: number) =>
  new ScsiCheckCondition('MISCOMPARE_DURING_VERIFY_OPERATION', { information: offset });

/** Index of the first differing byte, or -1. */
function firstDifference(
  a: Uint8Array,
  aOffset: number,
  b: Uint8Array,
  bOffset: number,
  length: number,
): number {
  for (let i = 0; i < length; i++) if (a[aOffset + i] !== b[bOffset + i]) return i;
  return -1;
}

/**
 * Read [lba, lba+blocks) in chunks; `compare(chunk, byteOffset)` returns the
 * offset of a miscompare within the range, or -1.
 */
async function verifyMedium(
  unit: LogicalUnitState,
  lba: number,
  blocks: number,
  signal: AbortSignal | undefined,
  compare?: (chunk: Uint8Array, byteOffset: number) => number,
): Promise<void> {
  const blockSize = unit.backend.blockSize;
  const chunkBlocks = Math.max(1, Math.floor(CHUNK_BYTES / blockSize));
  let buffer: Uint8Array | undefined;
  for (let done = 0; done < blocks; ) {
    const step = Math.min(chunkBlocks, blocks - done);
    if (!buffer || buffer.length !== step * blockSize) buffer = new Uint8Array(step * blockSize);
    await readBlocks(unit, lba + done, buffer, signal);
    if (compare) {
      const at = compare(buffer, done * blockSize);
      if (at >= 0) throw miscompare(at);
    }
    done += step;
  }
}

async function verify(ctx: CommandContext<VerifyFields>): Promise<undefined> {
  const { lba, blocks, byteCheck } = ctx.fields;
  const unit = ctx.unit;
  if (blocks === 0) return undefined;
  const expected = ctx.dataOut;
  const blockSize = unit.backend.blockSize;
  let compare: ((chunk: Uint8Array, byteOffset: number) => number) | undefined;
  if (byteCheck === 1) {
    compare = (chunk, byteOffset) => {
      const at = firstDifference(chunk, 0, expected, byteOffset, chunk.length);
      return at < 0 ? -1 : byteOffset + at;
    };
  } else if (byteCheck === 3) {
    // The one Data-Out block is compared with every block; INFORMATION is the
    // offset within the verified range.
    compare = (chunk, byteOffset) => {
      for (let o = 0; o < chunk.length; o += blockSize) {
        const at = firstDifference(chunk, o, expected, 0, blockSize);
        if (at >= 0) return byteOffset + o + at;
      }
      return -1;
    };
  }
  await withRangeLock(
    unit,
    lba,
    blocks,
    'shared',
    () => verifyMedium(unit, lba, blocks, ctx.signal, compare),
    ctx.signal,
  );
  return undefined;
}

async function writeAndVerify(ctx: CommandContext<VerifyFields>): Promise<undefined> {
  const { lba, blocks, byteCheck } = ctx.fields;
  const unit = ctx.unit;
  if (blocks === 0) return undefined;
  const data = ctx.dataOut;
  await withRangeLock(
    unit,
    lba,
    blocks,
    'shared',
    async () => {
      // The verification reads the medium, so the data must be on it first.
      await writeBlocks(unit, lba, data, true, ctx.signal);
      await verifyMedium(unit, lba, blocks, ctx.signal, (chunk, byteOffset) => {
        if (byteCheck !== 1) return -1;
        const at = firstDifference(chunk, 0, data, byteOffset, chunk.length);
        return at < 0 ? -1 : byteOffset + at;
      });
    },
    ctx.signal,
  );
  return undefined;
}

function verifyDataOutLength(lengthByte: number) {
  return (f: VerifyFields, unit: LogicalUnitState): number => {
    if (f.byteCheck === 1) checkTransferLength(unit, f.blocks, lengthByte);
    checkLbaRange(unit, f.lba, f.blocks);
    if (f.blocks === 0 || f.byteCheck === 0) return 0;
    return (f.byteCheck === 3 ? 1 : f.blocks) * unit.backend.blockSize;
  };
}

function writeAndVerifyDataOutLength(lengthByte: number) {
  return (f: VerifyFields, unit: LogicalUnitState): number => {
    checkTransferLength(unit, f.blocks, lengthByte);
    checkLbaRange(unit, f.lba, f.blocks);
    return f.blocks * unit.backend.blockSize;
  };
}

/** Where a CDB form keeps its fields (the 10-, 12- and 16-byte VERIFY and WRITE AND VERIFY CDBs). */
interface VerifyLayout {
  readonly length: number;
  readonly lbaSize: 4 | 8;
  readonly lengthAt: number;
  readonly lengthSize: 2 | 4;
  readonly groupAt: number;
}

const layout10: VerifyLayout = { length: 10, lbaSize: 4, lengthAt: 7, lengthSize: 2, groupAt: 6 };
const layout12: VerifyLayout = { length: 12, lbaSize: 4, lengthAt: 6, lengthSize: 4, groupAt: 10 };
const layout16: VerifyLayout = { length: 16, lbaSize: 8, lengthAt: 10, lengthSize: 4, groupAt: 14 };

/** VRPROTECT/WRPROTECT, DPO, BYTCHK; the LBA and length fields; GROUP NUMBER. */
function usageOf(opcode: number, l: VerifyLayout): number[] {
  const usage = new Array<number>(l.length).fill(0);
  usage[0] = opcode;
  usage[1] = 0xf6;
  usage.fill(0xff, 2, 2 + l.lbaSize);
  usage.fill(0xff, l.lengthAt, l.lengthAt + l.lengthSize);
  usage[l.groupAt] = 0x3f;
  return usage;
}

function entry(name: string, opcode: number, l: VerifyLayout, write: boolean): OpcodeEntry<VerifyFields> {
  return {
    opcode,
    name,
    cdbLength: l.length,
    direction: 'out',
    usage: usageOf(opcode, l),
    decode: (cdb) =>
      checkFlags(
        {
          lba: l.lbaSize === 4 ? be32(cdb, 2) : be64(cdb, 2),
          blocks: l.lengthSize === 2 ? be16(cdb, l.lengthAt) : be32(cdb, l.lengthAt),
          group: cdb[l.groupAt]! & 0x3f,
          ...flags(cdb[1]!),
        },
        write,
      ),
    encode(f) {
      const cdb = new Uint8Array(l.length);
      cdb[0] = opcode;
      cdb[1] = flagByte(f);
      if (l.lbaSize === 4) putBe32(cdb, 2, f.lba);
      else putBe64(cdb, 2, f.lba);
      if (l.lengthSize === 2) putBe16(cdb, l.lengthAt, f.blocks);
      else putBe32(cdb, l.lengthAt, f.blocks);
      cdb[l.groupAt] = f.group;
      return cdb;
    },
    dataOutLength: write ? writeAndVerifyDataOutLength(l.lengthAt) : verifyDataOutLength(l.lengthAt),
    handler: write ? writeAndVerify : verify,
    mediumAccess: true,
    writes: write,
    timeouts: { nominal: 30, recommended: 60 },
  };
}

const V = VerifyOpcode;
export const verifyCommands: OpcodeEntry<VerifyFields>[] = [
  entry('VERIFY(10)', V.VERIFY_10, layout10, false),
  entry('VERIFY(12)', V.VERIFY_12, layout12, false),
  entry('VERIFY(16)', V.VERIFY_16, layout16, false),
  entry('WRITE AND VERIFY(10)', V.WRITE_AND_VERIFY_10, layout10, true),
  entry('WRITE AND VERIFY(12)', V.WRITE_AND_VERIFY_12, layout12, true),
  entry('WRITE AND VERIFY(16)', V.WRITE_AND_VERIFY_16, layout16, true),
];
