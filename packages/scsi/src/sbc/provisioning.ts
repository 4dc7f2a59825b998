import type { LbaExtent } from '../core/backend.js';
import type { CommandContext, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { be16, be32, be64, putBe16, putBe32, putBe64 } from '../core/bytes.js';
import { invalidCdbField, invalidParameterField, ScsiCheckCondition } from '../core/errors.js';
import { acquireRange, checkLbaRange, flushBackend, writeBlocks } from '../core/io.js';
import { chunkBlocks, isZero, modifyMedium, mustPersist, zeroMedium } from './medium-access.js';

const CONTROL = 0x00;

/** WRITE SAME(10/16/32) fields (SBC-4 5.47-5.49). */
export interface WriteSameFields {
  readonly lba: number;
  readonly blocks: number;
  /** UNMAP: deallocate the blocks if the data block allows it. */
  readonly unmap: boolean;
  /** ANCHOR: anchor instead of deallocate (not supported: ANC_SUP=0). */
  readonly anchor: boolean;
  /** NDOB (16 and 32 only): no Data-Out buffer, the block is all zeros. */
  readonly noDataOutBuffer: boolean;
  readonly control: number;
}

/** Byte offsets of the fields that error field pointers name, per CDB form. */
interface WriteSameLayout {
  readonly flagsByte: number;
  readonly blocksByte: number;
}

const layout10: WriteSameLayout = { flagsByte: 1, blocksByte: 7 };
const layout16: WriteSameLayout = { flagsByte: 1, blocksByte: 10 };
const layout32: WriteSameLayout = { flagsByte: 10, blocksByte: 28 };

const checkWriteSameFlags = (f: WriteSameFields, l: WriteSameLayout): WriteSameFields => {
  // SBC-4 5.48: ANCHOR with ANC_SUP=0 in VPD B2h is an invalid field.
  if (f.anchor) throw invalidCdbField(l.flagsByte, 4);
  return f;
};

const decodeWriteSame10 = (cdb: Uint8Array): WriteSameFields =>
  checkWriteSameFlags(
    {
      lba: be32(cdb, 2),
      blocks: be16(cdb, 7),
      unmap: (cdb[1]! & 0x08) !== 0,
      anchor: (cdb[1]! & 0x10) !== 0,
      noDataOutBuffer: false,
      control: cdb[9]!,
    },
    layout10,
  );

const decodeWriteSame16 = (cdb: Uint8Array): WriteSameFields =>
  checkWriteSameFlags(
    {
      lba: be64(cdb, 2),
      blocks: be32(cdb, 10),
      unmap: (cdb[1]! & 0x08) !== 0,
      anchor: (cdb[1]! & 0x10) !== 0,
      noDataOutBuffer: (cdb[1]! & 0x01) !== 0,
      control: cdb[15]!,
    },
    layout16,
  );

const decodeWriteSame32 = (cdb: Uint8Array): WriteSameFields =>
  checkWriteSameFlags(
    {
      lba: be64(cdb, 12),
      blocks: be32(cdb, 28),
      unmap: (cdb[10]! & 0x08) !== 0,
      anchor: (cdb[10]! & 0x10) !== 0,
      noDataOutBuffer: (cdb[10]! & 0x01) !== 0,
      control: cdb[1]!,
    },
    layout32,
  );

const flagBits = (f: WriteSameFields): number =>
  (f.anchor ? 0x10 : 0) | (f.unmap ? 0x08 : 0) | (f.noDataOutBuffer ? 0x01 : 0);

const encodeWriteSame10 = (f: WriteSameFields): Uint8Array => {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x41;
  cdb[1] = flagBits(f) & ~0x01;
  putBe32(cdb, 2, f.lba);
  putBe16(cdb, 7, f.blocks);
  cdb[9] = f.control;
  return cdb;
};

const encodeWriteSame16 = (f: WriteSameFields): Uint8Array => {
  const cdb = new Uint8Array(16);
  cdb[0] = 0x93;
  cdb[1] = flagBits(f);
  putBe64(cdb, 2, f.lba);
  putBe32(cdb, 10, f.blocks);
  cdb[15] = f.control;
  return cdb;
};

const encodeWriteSame32 = (f: WriteSameFields): Uint8Array => {
  const cdb = new Uint8Array(32);
  cdb[0] = 0x7f;
  cdb[1] = f.control;
  cdb[7] = 0x18; // ADDITIONAL CDB LENGTH
  putBe16(cdb, 8, 0x000d);
  cdb[10] = flagBits(f);
  putBe64(cdb, 12, f.lba);
  putBe32(cdb, 28, f.blocks);
  return cdb;
};

/**
 * SBC-4 5.47: write one block of data to every block of the range. With
 * UNMAP, a range whose data block reads back the same as a deallocated block
 * (zeros, LBPRZ) is deallocated; otherwise the data is written.
 */
const writeSame = async (ctx: CommandContext<WriteSameFields>, l: WriteSameLayout): Promise<undefined> => {
  const { unit, fields: f, signal } = ctx;
  const { backend, config } = unit;
  // SBC-4 5.47: WSNZ=1 in VPD B0h, so zero blocks (the whole rest of the medium) is refused.
  if (f.blocks === 0) throw invalidCdbField(l.blocksByte);
  if (f.blocks > config.maxWriteSameBlocks) throw invalidCdbField(l.blocksByte);
  checkLbaRange(unit, f.lba, f.blocks);
  const blockSize = backend.blockSize;
  const block = f.noDataOutBuffer ? new Uint8Array(blockSize) : ctx.dataOut.subarray(0, blockSize);
  if (block.length < blockSize) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');

  const release = await acquireRange(unit, f.lba, f.blocks, 'shared', signal);
  try {
    if (isZero(block)) {
      await zeroMedium(unit, f.lba, f.blocks, { deallocate: f.unmap, fua: false, signal });
      return undefined;
    }
    const step = Math.min(f.blocks, chunkBlocks(blockSize));
    const pattern = new Uint8Array(step * blockSize);
    for (let i = 0; i < step; i++) pattern.set(block, i * blockSize);
    const end = f.lba + f.blocks;
    for (let at = f.lba; at < end; at += step) {
      const n = Math.min(step, end - at);
      await writeBlocks(unit, at, pattern.subarray(0, n * blockSize), false, signal);
    }
    return undefined;
  } finally {
    release();
  }
};

/** The backend can deallocate blocks (LBPME): UNMAP and WRITE SAME's UNMAP bit depend on it. */
export const canDeallocate = (unit: LogicalUnitState): boolean => unit.backend.discard !== undefined;

const UNMAP_BIT = 0x08;

const writeSameEntry = (
  base: Pick<
    OpcodeEntry<WriteSameFields>,
    'opcode' | 'serviceAction' | 'name' | 'cdbLength' | 'usage' | 'decode' | 'encode'
  >,
  l: WriteSameLayout,
): OpcodeEntry<WriteSameFields> => {
  // Without deallocation the UNMAP bit is not offered: INVALID FIELD IN CDB, and
  // REPORT SUPPORTED OPERATION CODES shows it clear (SBC-4 5.48, LBPWS=0).
  const withoutUnmap = base.usage.map((bits, i) => (i === l.flagsByte ? bits & ~UNMAP_BIT : bits));
  return {
    ...base,
    direction: 'out',
    usageFor: (unit) => (canDeallocate(unit) ? base.usage : withoutUnmap),
    dataOutLength: (f, unit) => (f.noDataOutBuffer ? 0 : unit.backend.blockSize),
    handler: (ctx) => writeSame(ctx, l),
    writes: true,
  };
};

const writeSame10 = writeSameEntry(
  {
    opcode: 0x41,
    name: 'WRITE SAME(10)',
    cdbLength: 10,
    // WRPROTECT, PBDATA/LBDATA (obsolete) and GROUP NUMBER are not supported.
    usage: [0x41, 0x18, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, CONTROL],
    decode: decodeWriteSame10,
    encode: encodeWriteSame10,
  },
  layout10,
);

const writeSame16 = writeSameEntry(
  {
    opcode: 0x93,
    name: 'WRITE SAME(16)',
    cdbLength: 16,
    usage: [
      0x93,
      0x19,
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
      0x00,
      CONTROL,
    ],
    decode: decodeWriteSame16,
    encode: encodeWriteSame16,
  },
  layout16,
);

const writeSame32 = writeSameEntry(
  {
    opcode: 0x7f,
    serviceAction: 0x000d,
    name: 'WRITE SAME(32)',
    cdbLength: 32,
    // Protection fields (expected reference/tag/mask, bytes 20-27) are not supported.
    usage: [
      0x7f,
      CONTROL,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      0x18,
      0x00,
      0x0d,
      0x19,
      0x00,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      0xff,
      0xff,
      0xff,
      0xff,
    ],
    decode: decodeWriteSame32,
    encode: encodeWriteSame32,
  },
  layout32,
);

/** UNMAP fields (SBC-4 5.32). */
export interface UnmapFields {
  readonly anchor: boolean;
  readonly parameterListLength: number;
  readonly control: number;
}

/** One UNMAP block descriptor. */
export interface UnmapDescriptor {
  readonly lba: number;
  readonly blocks: number;
}

const UNMAP_HEADER = 8;
const UNMAP_DESCRIPTOR = 16;

/**
 * SBC-4 5.32.2: parse and validate an UNMAP parameter list completely (before
 * anything is deallocated). Returns the descriptors with a non-zero count.
 */
export const parseUnmapParameterList = (
  data: Uint8Array,
  limits: {
    readonly blockCount: number;
    readonly maxUnmapBlocks: number;
    readonly maxUnmapDescriptors: number;
  },
): UnmapDescriptor[] => {
  if (data.length === 0) return [];
  if (data.length < UNMAP_HEADER) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  const dataLength = be16(data, 0);
  const descriptorDataLength = be16(data, 2);
  // Both lengths promise bytes that must have been transferred.
  if (dataLength + 2 > data.length || descriptorDataLength + UNMAP_HEADER > data.length) {
    throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  }
  // UNMAP DATA LENGTH counts the six header bytes after it plus the descriptors.
  if (dataLength < descriptorDataLength + 6) throw invalidParameterField(0);
  // SBC-4 5.32.2: an incomplete last descriptor (length not a multiple of 16) is ignored.
  const count = Math.floor(descriptorDataLength / UNMAP_DESCRIPTOR);
  if (count > limits.maxUnmapDescriptors) throw invalidParameterField(2);
  const descriptors: UnmapDescriptor[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const at = UNMAP_HEADER + i * UNMAP_DESCRIPTOR;
    const lba = be64(data, at);
    const blocks = be32(data, at + 8);
    total += blocks;
    // MAXIMUM UNMAP LBA COUNT bounds the sum over all descriptors.
    if (total > limits.maxUnmapBlocks) throw invalidParameterField(at + 8);
    if (lba > limits.blockCount || blocks > limits.blockCount - lba) {
      throw new ScsiCheckCondition('LBA_OUT_OF_RANGE');
    }
    if (blocks > 0) descriptors.push({ lba, blocks });
  }
  return descriptors;
};

/** Build an UNMAP parameter list (initiators, tests). */
export const encodeUnmapParameterList = (descriptors: readonly UnmapDescriptor[]): Uint8Array => {
  const out = new Uint8Array(UNMAP_HEADER + descriptors.length * UNMAP_DESCRIPTOR);
  putBe16(out, 0, out.length - 2);
  putBe16(out, 2, descriptors.length * UNMAP_DESCRIPTOR);
  descriptors.forEach((d, i) => {
    putBe64(out, UNMAP_HEADER + i * UNMAP_DESCRIPTOR, d.lba);
    putBe32(out, UNMAP_HEADER + i * UNMAP_DESCRIPTOR + 8, d.blocks);
  });
  return out;
};

const unmap = async (ctx: CommandContext<UnmapFields>): Promise<undefined> => {
  const { unit, fields: f, signal } = ctx;
  const backend = unit.backend;
  if (ctx.dataOut.length < f.parameterListLength) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  const descriptors = parseUnmapParameterList(ctx.dataOut.subarray(0, f.parameterListLength), {
    blockCount: backend.blockCount,
    maxUnmapBlocks: unit.config.maxUnmapBlocks,
    maxUnmapDescriptors: unit.config.maxUnmapDescriptors,
  });
  for (const d of descriptors) {
    const release = await acquireRange(unit, d.lba, d.blocks, 'shared', signal);
    try {
      await modifyMedium(d.lba, signal, () => backend.discard!(d.lba, d.blocks, signal));
    } finally {
      release();
    }
  }
  if (descriptors.length > 0 && mustPersist(unit, false)) await flushBackend(unit, signal);
  return undefined;
};

const unmapEntry: OpcodeEntry<UnmapFields> = {
  opcode: 0x42,
  name: 'UNMAP',
  cdbLength: 10,
  direction: 'out',
  usage: [0x42, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, CONTROL],
  decode: (cdb) => {
    const f: UnmapFields = {
      anchor: (cdb[1]! & 0x01) !== 0,
      parameterListLength: be16(cdb, 7),
      control: cdb[9]!,
    };
    if (f.anchor) throw invalidCdbField(1, 0); // ANC_SUP=0 (SBC-4 5.32.1)
    return f;
  },
  encode: (f) => {
    const cdb = new Uint8Array(10);
    cdb[0] = 0x42;
    cdb[1] = f.anchor ? 0x01 : 0;
    putBe16(cdb, 7, f.parameterListLength);
    cdb[9] = f.control;
    return cdb;
  },
  dataOutLength: (f) => f.parameterListLength,
  handler: unmap,
  // LBPU=0 in VPD B2h when the backend cannot deallocate (SBC-4 5.32.1).
  supported: canDeallocate,
  writes: true,
};

/** GET LBA STATUS fields (SBC-4 5.9). */
export interface GetLbaStatusFields {
  readonly lba: number;
  readonly allocationLength: number;
  readonly control: number;
}

const provisioningStatus: Record<LbaExtent['state'], number> = { mapped: 0, deallocated: 1, anchored: 2 };

/** At most this many LBA status descriptors per response (keeps the answer bounded). */
const MAX_LBA_STATUS_DESCRIPTORS = 1024;

/**
 * SBC-4 5.9: LBA status descriptors from the starting LBA on, as many as the
 * allocation length holds (at least one), each an extent of one state.
 */
const getLbaStatus = async (ctx: CommandContext<GetLbaStatusFields>): Promise<Uint8Array> => {
  const { unit, fields: f } = ctx;
  const backend = unit.backend;
  if (f.lba >= backend.blockCount) throw new ScsiCheckCondition('LBA_OUT_OF_RANGE');
  const wanted = Math.min(
    MAX_LBA_STATUS_DESCRIPTORS,
    Math.max(1, Math.floor((f.allocationLength - UNMAP_HEADER) / UNMAP_DESCRIPTOR)),
  );
  const extents: LbaExtent[] = [];
  let at = f.lba;
  while (extents.length < wanted && at < backend.blockCount) {
    const maxBlocks = Math.min(backend.blockCount - at, 0xffff_ffff);
    let extent: LbaExtent;
    if (backend.mappingStatus === undefined) extent = { lba: at, blocks: maxBlocks, state: 'mapped' };
    else {
      try {
        extent = await backend.mappingStatus(at, maxBlocks);
      } catch (error) {
        throw new ScsiCheckCondition('UNRECOVERED_READ_ERROR', { information: at, cause: error });
      }
    }
    // A backend answer outside [at, at + maxBlocks] is clamped; a zero-length one would loop.
    const blocks = Math.min(Math.max(1, extent.blocks), maxBlocks);
    extents.push({ lba: at, blocks, state: extent.state });
    at += blocks;
  }
  const out = new Uint8Array(UNMAP_HEADER + extents.length * UNMAP_DESCRIPTOR);
  putBe32(out, 0, out.length - 4); // PARAMETER DATA LENGTH
  extents.forEach((e, i) => {
    const d = UNMAP_HEADER + i * UNMAP_DESCRIPTOR;
    putBe64(out, d, e.lba);
    putBe32(out, d + 8, e.blocks);
    out[d + 12] = provisioningStatus[e.state];
  });
  return out;
};

const getLbaStatusEntry: OpcodeEntry<GetLbaStatusFields> = {
  opcode: 0x9e,
  serviceAction: 0x12,
  name: 'GET LBA STATUS',
  cdbLength: 16,
  direction: 'in',
  usage: [0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, CONTROL],
  decode: (cdb) => ({ lba: be64(cdb, 2), allocationLength: be32(cdb, 10), control: cdb[15]! }),
  encode: (f) => {
    const cdb = new Uint8Array(16);
    cdb[0] = 0x9e;
    cdb[1] = 0x12;
    putBe64(cdb, 2, f.lba);
    putBe32(cdb, 10, f.allocationLength);
    cdb[15] = f.control;
    return cdb;
  },
  allocationLength: (f) => f.allocationLength,
  handler: getLbaStatus,
  mediumAccess: true,
};

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const provisioningCommands: OpcodeEntry<any>[] = [
  writeSame10,
  writeSame16,
  writeSame32,
  unmapEntry,
  getLbaStatusEntry,
];
