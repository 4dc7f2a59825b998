import { be16, be32, be64, putBe16, putBe32, putBe64 } from '../core/bytes.js';
import type { CommandContext, CommandHandler, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { invalidCdbField } from '../core/errors.js';
import {
  acquireRange,
  allocateDataIn,
  byteLength,
  checkLbaRange,
  checkTransferLength,
  type DataBuffer,
  isPromise,
  isScatterList,
  limitSegments,
  readBlocks,
  writeBlocks,
} from '../core/io.js';

/** READ and WRITE (6/10/12/16/32), SBC-4 5.8-5.12, 5.35-5.39. */
export interface ReadWriteFields {
  readonly lba: number;
  /** Number of logical blocks (READ(6)/WRITE(6): 0 in the CDB means 256). */
  readonly blocks: number;
  readonly dpo: boolean;
  readonly fua: boolean;
  /** RDPROTECT / WRPROTECT (must be 0: no protection information). */
  readonly protect: number;
  readonly group: number;
}

export const ReadWriteOpcode = {
  READ_6: 0x08,
  WRITE_6: 0x0a,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
  READ_16: 0x88,
  WRITE_16: 0x8a,
  VARIABLE_LENGTH: 0x7f,
} as const;
export const READ_32_SERVICE_ACTION = 0x0009;
export const WRITE_32_SERVICE_ACTION = 0x000b;

/** The decoded fields in one object literal of one shape (no spread: READ/WRITE are the hot path). */
const fieldsOf = (lba: number, blocks: number, b1: number, group: number): ReadWriteFields => ({
  lba,
  blocks,
  dpo: (b1 & 0x10) !== 0,
  fua: (b1 & 0x08) !== 0,
  protect: b1 >>> 5,
  group,
});
const flagByte = (f: ReadWriteFields) => ((f.protect & 7) << 5) | (f.dpo ? 0x10 : 0) | (f.fua ? 0x08 : 0);

/** The CDB layouts, each with where the protect flags and the transfer length sit. */
export interface ReadWriteLayout {
  readonly length: number;
  readonly flagsByte: number;
  readonly lengthByte: number;
  readonly decode: (cdb: Uint8Array) => ReadWriteFields;
  readonly encode: (cdb: Uint8Array, f: ReadWriteFields) => void;
  readonly usage: (opcode: number) => number[];
}

const layout6: ReadWriteLayout = {
  length: 6,
  flagsByte: -1,
  lengthByte: 4,
  // SBC-4 5.10: 21-bit LBA; TRANSFER LENGTH 0 means 256 blocks.
  decode: (cdb) => fieldsOf(((cdb[1]! & 0x1f) << 16) | be16(cdb, 2), cdb[4]! === 0 ? 256 : cdb[4]!, 0, 0),
  encode(cdb, f) {
    cdb[1] = (f.lba >>> 16) & 0x1f;
    putBe16(cdb, 2, f.lba & 0xffff);
    cdb[4] = f.blocks === 256 ? 0 : f.blocks;
  },
  usage: (op) => [op, 0x1f, 0xff, 0xff, 0xff, 0x00],
};

const layout10: ReadWriteLayout = {
  length: 10,
  flagsByte: 1,
  lengthByte: 7,
  decode: (cdb) => fieldsOf(be32(cdb, 2), be16(cdb, 7), cdb[1]!, cdb[6]! & 0x3f),
  encode(cdb, f) {
    cdb[1] = flagByte(f);
    putBe32(cdb, 2, f.lba);
    cdb[6] = f.group;
    putBe16(cdb, 7, f.blocks);
  },
  usage: (op) => [op, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00],
};

const layout12: ReadWriteLayout = {
  length: 12,
  flagsByte: 1,
  lengthByte: 6,
  decode: (cdb) => fieldsOf(be32(cdb, 2), be32(cdb, 6), cdb[1]!, cdb[10]! & 0x3f),
  encode(cdb, f) {
    cdb[1] = flagByte(f);
    putBe32(cdb, 2, f.lba);
    putBe32(cdb, 6, f.blocks);
    cdb[10] = f.group;
  },
  usage: (op) => [op, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x00],
};

export const layout16: ReadWriteLayout = {
  length: 16,
  flagsByte: 1,
  lengthByte: 10,
  decode: (cdb) => fieldsOf(be64(cdb, 2), be32(cdb, 10), cdb[1]!, cdb[14]! & 0x3f),
  encode(cdb, f) {
    cdb[1] = flagByte(f);
    putBe64(cdb, 2, f.lba);
    putBe32(cdb, 10, f.blocks);
    cdb[14] = f.group;
  },
  usage: (op) => [
    op,
    0xf8,
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
};

/**
 * SBC-4 5.13/5.40: READ(32)/WRITE(32). The expected reference/application tag
 * fields only matter with protection information, which this unit does not
 * have, so they are accepted and ignored.
 */
const layout32 = (serviceAction: number): ReadWriteLayout => ({
  length: 32,
  flagsByte: 10,
  lengthByte: 28,
  decode: (cdb) => fieldsOf(be64(cdb, 12), be32(cdb, 28), cdb[10]!, cdb[6]! & 0x3f),
  encode(cdb, f) {
    cdb[6] = f.group;
    cdb[7] = 0x18;
    putBe16(cdb, 8, serviceAction);
    cdb[10] = flagByte(f);
    putBe64(cdb, 12, f.lba);
    putBe32(cdb, 28, f.blocks);
  },
  usage: (op) => {
    const u = new Array<number>(32).fill(0);
    u[0] = op;
    u[6] = 0x3f;
    u[7] = 0x18;
    u[8] = serviceAction >>> 8;
    u[9] = serviceAction & 0xff;
    u[10] = 0xf8;
    for (let i = 12; i < 32; i++) u[i] = 0xff;
    return u;
  },
});

/** The signal for the backend call: none for a backend that ignores it, so none is built. */
const backendSignal = (ctx: CommandContext<ReadWriteFields>): AbortSignal | undefined =>
  ctx.unit.backend.ignoresSignal ? undefined : ctx.signal;

/**
 * READ: straight into the caller's Data-In memory when it holds the transfer
 * (one buffer or a scatter list), else into a new buffer. The uncontended case
 * is synchronous and allocates nothing of its own: no closure, no promise.
 */
const readHandler =
  (layout: ReadWriteLayout): CommandHandler<ReadWriteFields> =>
  (ctx) => {
    const { lba, blocks } = ctx.fields;
    const unit = ctx.unit;
    checkTransferLength(unit, blocks, layout.lengthByte);
    checkLbaRange(unit, lba, blocks);
    if (blocks === 0) return undefined;
    const bytes = blocks * unit.backend.blockSize;
    const inPlace = callerMemory(ctx.dataInBuffer, bytes);
    const into = inPlace ?? allocateDataIn(bytes);
    if (!unit.locks.tryShared()) return readLocked(ctx, into, bytes, inPlace !== undefined);
    let done: Promise<void> | void;
    try {
      done = readBlocks(unit, lba, into, backendSignal(ctx));
    } catch (error) {
      unit.locks.releaseShared();
      throw error;
    }
    if (isPromise(done)) {
      const output = inPlace === undefined ? (into as Uint8Array) : bytes;
      return done.finally(() => unit.locks.releaseShared()).then(() => output);
    }
    unit.locks.releaseShared();
    // In place: the count (the data is already where the caller wants it).
    return inPlace === undefined ? (into as Uint8Array) : bytes;
  };

/** The caller's Data-In memory (or its first `bytes`) when it holds the whole transfer. */
function callerMemory(buffer: DataBuffer | undefined, bytes: number): DataBuffer | undefined {
  if (buffer === undefined) return undefined;
  if (!isScatterList(buffer)) {
    if (buffer.length === bytes) return buffer;
    return buffer.length > bytes ? buffer.subarray(0, bytes) : undefined;
  }
  const total = byteLength(buffer);
  if (total === bytes) return buffer;
  return total > bytes ? limitSegments(buffer, bytes) : undefined;
}

/** READ that must wait for its range lock (a COMPARE AND WRITE or FORMAT holds it). */
async function readLocked(
  ctx: CommandContext<ReadWriteFields>,
  into: DataBuffer,
  bytes: number,
  inPlace: boolean,
): Promise<Uint8Array | number> {
  const { lba, blocks } = ctx.fields;
  const release = await acquireRange(ctx.unit, lba, blocks, 'shared', ctx.signal);
  try {
    await readBlocks(ctx.unit, lba, into, backendSignal(ctx));
  } finally {
    release();
  }
  return inPlace ? bytes : (into as Uint8Array);
}

/** WRITE: from the transport's Data-Out (its scatter list when it has one: writev, no gather). */
const writeHandler: CommandHandler<ReadWriteFields> = (ctx) => {
  const { lba, blocks, fua } = ctx.fields;
  if (blocks === 0) return undefined;
  const unit = ctx.unit;
  const data = ctx.dataOutSegments ?? ctx.dataOut;
  if (!unit.locks.tryShared()) return writeLocked(ctx, data);
  let done: Promise<void> | void;
  try {
    done = writeBlocks(unit, lba, data, fua, backendSignal(ctx));
  } catch (error) {
    unit.locks.releaseShared();
    throw error;
  }
  if (isPromise(done)) return done.finally(() => unit.locks.releaseShared()).then(nothing);
  unit.locks.releaseShared();
  return undefined;
};

const nothing = (): undefined => undefined;

async function writeLocked(ctx: CommandContext<ReadWriteFields>, data: DataBuffer): Promise<undefined> {
  const { lba, blocks, fua } = ctx.fields;
  const release = await acquireRange(ctx.unit, lba, blocks, 'shared', ctx.signal);
  try {
    await writeBlocks(ctx.unit, lba, data, fua, backendSignal(ctx));
  } finally {
    release();
  }
  return undefined;
}

/** Validates the CDB against the unit before any Data-Out is needed, then sizes it. */
export const writeDataOutLength =
  (layout: ReadWriteLayout) =>
  (f: ReadWriteFields, unit: LogicalUnitState): number => {
    checkTransferLength(unit, f.blocks, layout.lengthByte);
    checkLbaRange(unit, f.lba, f.blocks);
    return f.blocks * unit.backend.blockSize;
  };

/** The CDB side of an entry: length, usage mask and codec (RDPROTECT/WRPROTECT must be 0). */
export function readWriteCodec(
  opcode: number,
  layout: ReadWriteLayout,
): Pick<OpcodeEntry<ReadWriteFields>, 'cdbLength' | 'usage' | 'decode' | 'encode'> {
  return {
    cdbLength: layout.length,
    usage: layout.usage(opcode),
    decode(cdb) {
      const fields = layout.decode(cdb);
      // No protection information (SBC-4 4.22): RDPROTECT/WRPROTECT must be zero.
      if (fields.protect !== 0) throw invalidCdbField(layout.flagsByte, 7);
      return fields;
    },
    encode(f) {
      const cdb = new Uint8Array(layout.length);
      cdb[0] = opcode;
      layout.encode(cdb, f);
      return cdb;
    },
  };
}

function entry(
  name: string,
  opcode: number,
  layout: ReadWriteLayout,
  write: boolean,
  serviceAction?: number,
): OpcodeEntry<ReadWriteFields> {
  const common = {
    opcode,
    name,
    ...readWriteCodec(opcode, layout),
    mediumAccess: true,
    timeouts: { nominal: 10, recommended: 30 },
    ...(serviceAction === undefined ? {} : { serviceAction }),
  };
  return write
    ? {
        ...common,
        direction: 'out',
        handler: writeHandler,
        dataOutLength: writeDataOutLength(layout),
        writes: true,
      }
    : { ...common, direction: 'in', handler: readHandler(layout) };
}

const R = ReadWriteOpcode;
export const readWriteCommands: OpcodeEntry<ReadWriteFields>[] = [
  entry('READ(6)', R.READ_6, layout6, false),
  entry('WRITE(6)', R.WRITE_6, layout6, true),
  entry('READ(10)', R.READ_10, layout10, false),
  entry('WRITE(10)', R.WRITE_10, layout10, true),
  entry('READ(12)', R.READ_12, layout12, false),
  entry('WRITE(12)', R.WRITE_12, layout12, true),
  entry('READ(16)', R.READ_16, layout16, false),
  entry('WRITE(16)', R.WRITE_16, layout16, true),
  entry('READ(32)', R.VARIABLE_LENGTH, layout32(READ_32_SERVICE_ACTION), false, READ_32_SERVICE_ACTION),
  entry('WRITE(32)', R.VARIABLE_LENGTH, layout32(WRITE_32_SERVICE_ACTION), true, WRITE_32_SERVICE_ACTION),
];
