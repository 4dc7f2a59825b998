import { be32, be64, putBe32, putBe64 } from '../core/bytes.js';
import type { CommandContext, OpcodeEntry } from '../core/command.js';
import { invalidCdbField } from '../core/errors.js';
import type { LogicalUnit } from '../core/unit.js';
import { provisioningAbilities } from '../spc/inquiry.js';

export const READ_CAPACITY_10 = 0x25;
export const SERVICE_ACTION_IN_16 = 0x9e;
export const READ_CAPACITY_16_SERVICE_ACTION = 0x10;

/** READ CAPACITY(10), SBC-4 5.20. */
export interface ReadCapacity10Fields {
  readonly lba: number;
  /** PMI (obsolete in SBC-4): with PMI=0 the LBA must be 0 (SBC-3 5.15). */
  readonly pmi: boolean;
}

/** READ CAPACITY(16), SBC-4 5.21. */
export interface ReadCapacity16Fields {
  readonly lba: number;
  readonly pmi: boolean;
  readonly allocationLength: number;
}

function readCapacity10(ctx: CommandContext<ReadCapacity10Fields>): Uint8Array {
  const backend = ctx.unit.backend;
  const b = new Uint8Array(8);
  // 0xFFFFFFFF tells the initiator to use READ CAPACITY(16).
  putBe32(b, 0, Math.min(backend.blockCount - 1, 0xffff_ffff));
  putBe32(b, 4, backend.blockSize);
  return b;
}

function readCapacity16(ctx: CommandContext<ReadCapacity16Fields>): Uint8Array {
  const unit = ctx.unit;
  const backend = unit.backend;
  const b = new Uint8Array(32);
  putBe64(b, 0, backend.blockCount - 1);
  putBe32(b, 8, backend.blockSize);
  b[13] = (backend.physicalBlockExponent ?? 0) & 0x0f; // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
  const lowestAligned = (unit.config.lowestAlignedLba ?? 0) & 0x3fff;
  // LBPME/LBPRZ agree with VPD B2h: both derive from the commands the unit offers.
  const p = provisioningAbilities(unit as LogicalUnit);
  b[14] = (p.thin ? 0x80 : 0) | (p.readsZero ? 0x40 : 0) | (lowestAligned >>> 8); // LBPME, LBPRZ
  b[15] = lowestAligned & 0xff;
  return b;
}

export const readCapacity10Entry: OpcodeEntry<ReadCapacity10Fields> = {
  opcode: READ_CAPACITY_10,
  name: 'READ CAPACITY(10)',
  cdbLength: 10,
  direction: 'in',
  usage: [READ_CAPACITY_10, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00],
  decode(cdb) {
    const lba = be32(cdb, 2);
    const pmi = (cdb[8]! & 0x01) !== 0;
    if (!pmi && lba !== 0) throw invalidCdbField(2);
    return { lba, pmi };
  },
  encode(f) {
    const cdb = new Uint8Array(10);
    cdb[0] = READ_CAPACITY_10;
    putBe32(cdb, 2, f.lba);
    cdb[8] = f.pmi ? 1 : 0;
    return cdb;
  },
  handler: readCapacity10,
  mediumAccess: true,
  allowedDuringSanitize: true,
  timeouts: { nominal: 1, recommended: 5 },
};

export const readCapacity16Entry: OpcodeEntry<ReadCapacity16Fields> = {
  opcode: SERVICE_ACTION_IN_16,
  serviceAction: READ_CAPACITY_16_SERVICE_ACTION,
  name: 'READ CAPACITY(16)',
  cdbLength: 16,
  direction: 'in',
  usage: [
    SERVICE_ACTION_IN_16,
    READ_CAPACITY_16_SERVICE_ACTION,
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
    0x01,
    0x00,
  ],
  decode(cdb) {
    const lba = be64(cdb, 2);
    const pmi = (cdb[14]! & 0x01) !== 0;
    if (!pmi && lba !== 0) throw invalidCdbField(2);
    return { lba, pmi, allocationLength: be32(cdb, 10) };
  },
  encode(f) {
    const cdb = new Uint8Array(16);
    cdb[0] = SERVICE_ACTION_IN_16;
    cdb[1] = READ_CAPACITY_16_SERVICE_ACTION;
    putBe64(cdb, 2, f.lba);
    putBe32(cdb, 10, f.allocationLength);
    cdb[14] = f.pmi ? 1 : 0;
    return cdb;
  },
  allocationLength: (f) => f.allocationLength,
  handler: readCapacity16,
  mediumAccess: true,
  allowedDuringSanitize: true,
  timeouts: { nominal: 1, recommended: 5 },
};

export const capacityCommands = [readCapacity10Entry, readCapacity16Entry] as const;
