import { describe, expect, it } from 'vitest';
import { ScsiStatus } from '../core/status.js';
import { decodeSense } from '../sense/sense.js';
import { type CommandVector, cdbWith, itAnswers, makeUnit, run } from '../testing/harness.js';
import { DefectListFormat, defectCommands } from './defects.js';

/** READ DEFECT DATA(10): REQ_PLIST (bit 4), REQ_GLIST (bit 3), DEFECT LIST FORMAT in byte 2; ALLOCATION LENGTH 7-8. */
const rdd10 = (request: number, alloc = 0xffff, byte1 = 0) =>
  cdbWith(10, 0x37, [1, 1, byte1], [2, 1, request], [7, 2, alloc]);
/** READ DEFECT DATA(12): the request in byte 1, ADDRESS DESCRIPTOR INDEX 2-5, ALLOCATION LENGTH 6-9. */
const rdd12 = (request: number, index = 0, alloc = 0xffff, byte10 = 0) =>
  cdbWith(12, 0xb7, [1, 1, request], [2, 4, index], [6, 4, alloc], [10, 1, byte10]);
const PLIST = 0x10;
const GLIST = 0x08;
const F = DefectListFormat;

/** Every defined format comes back as requested: the lists are empty, so any format can hold them. */
const honoured = (form: 10 | 12): CommandVector[] =>
  [
    F.SHORT_BLOCK,
    F.EXTENDED_BYTES_FROM_INDEX,
    F.EXTENDED_PHYSICAL_SECTOR,
    F.LONG_BLOCK,
    F.BYTES_FROM_INDEX,
    F.PHYSICAL_SECTOR,
  ].map((format) => ({
    name: `both lists in format ${format.toString(2).padStart(3, '0')}b`,
    cdb: form === 10 ? rdd10(PLIST | GLIST | format) : rdd12(PLIST | GLIST | format),
    dataIn: form === 10 ? [0, 0x18 | format, 0, 0] : [0, 0x18 | format, 0, 0, 0, 0, 0, 0],
  }));

describe('READ DEFECT DATA(10) 37h named vectors: empty primary and grown lists', () => {
  itAnswers([
    {
      name: 'neither list: the header only (libiscsi READDEFECTDATA10 simple)',
      cdb: rdd10(0, 32),
      dataIn: [0, 0, 0, 0],
    },
    { name: 'the PLIST: PLISTV, DEFECT LIST LENGTH 0', cdb: rdd10(PLIST), dataIn: [0, 0x10, 0, 0] },
    { name: 'the GLIST: GLISTV', cdb: rdd10(GLIST | F.LONG_BLOCK), dataIn: [0, 0x08 | 3, 0, 0] },
    ...honoured(10),
    {
      name: 'a vendor-specific format: the lists in long block format, then RECOVERED ERROR / DEFECT LIST NOT FOUND',
      cdb: rdd10(PLIST | F.VENDOR_SPECIFIC),
      check: 'RECOVERED_ERROR_DEFECT_LIST_NOT_FOUND',
      dataIn: [0, 0x10 | F.LONG_BLOCK, 0, 0],
    },
    {
      name: 'a vendor-specific format, header only: no list in another format, GOOD',
      cdb: rdd10(F.VENDOR_SPECIFIC),
      dataIn: [0, F.LONG_BLOCK, 0, 0],
    },
    {
      name: 'format 111b is reserved: byte 2 bit 2',
      cdb: rdd10(0x07),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 2,
      bit: 2,
    },
    { name: 'byte 2 bit 5 is reserved', cdb: rdd10(0x20), check: 'INVALID_FIELD_IN_CDB', byte: 2, bit: 5 },
    { name: 'byte 1 is reserved', cdb: rdd10(0, 4, 0x01), check: 'INVALID_FIELD_IN_CDB', byte: 1, bit: 0 },
    { name: 'ALLOCATION LENGTH 2: two bytes of the header', cdb: rdd10(PLIST, 2), dataIn: [0, 0x10] },
    { name: 'ALLOCATION LENGTH 0: nothing', cdb: rdd10(PLIST, 0), dataIn: [] },
    {
      name: 'the RECOVERED ERROR data is cut to the ALLOCATION LENGTH too',
      cdb: rdd10(GLIST | F.VENDOR_SPECIFIC, 3),
      check: 'RECOVERED_ERROR_DEFECT_LIST_NOT_FOUND',
      dataIn: [0, 0x08 | F.LONG_BLOCK, 0],
    },
  ]);
});

describe('READ DEFECT DATA(12) B7h named vectors', () => {
  itAnswers([
    {
      name: 'neither list: the 8-byte header (libiscsi READDEFECTDATA12 simple)',
      cdb: rdd12(0, 0, 32),
      dataIn: [0, 0, 0, 0, 0, 0, 0, 0],
    },
    { name: 'both lists', cdb: rdd12(PLIST | GLIST), dataIn: [0, 0x18, 0, 0, 0, 0, 0, 0] },
    {
      name: 'ADDRESS DESCRIPTOR INDEX past the lists: DEFECT LIST LENGTH 0',
      cdb: rdd12(PLIST, 5),
      dataIn: [0, 0x10, 0, 0, 0, 0, 0, 0],
    },
    ...honoured(12),
    {
      name: 'a vendor-specific format: long block format, then RECOVERED ERROR',
      cdb: rdd12(PLIST | GLIST | F.VENDOR_SPECIFIC),
      check: 'RECOVERED_ERROR_DEFECT_LIST_NOT_FOUND',
      dataIn: [0, 0x18 | F.LONG_BLOCK, 0, 0, 0, 0, 0, 0],
    },
    {
      name: 'format 111b is reserved: byte 1 bit 2',
      cdb: rdd12(0x07),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 1,
      bit: 2,
    },
    { name: 'byte 1 bit 7 is reserved', cdb: rdd12(0x80), check: 'INVALID_FIELD_IN_CDB', byte: 1, bit: 7 },
    {
      name: 'byte 10 is reserved',
      cdb: rdd12(0, 0, 8, 0x01),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 10,
      bit: 0,
    },
  ]);
});

describe('READ DEFECT DATA answers', () => {
  it('a RECOVERED ERROR carries its Data-In and the residual of the rest of the buffer', async () => {
    const result = await run(makeUnit().unit, rdd10(PLIST | F.VENDOR_SPECIFIC, 64), { dataInLength: 16 });
    expect(result.status).toBe(ScsiStatus.CHECK_CONDITION);
    expect(decodeSense(result.sense!).key).toBe(0x1); // RECOVERED ERROR
    expect([...result.dataIn!]).toEqual([0, 0x13, 0, 0]);
    expect(result.residual).toBe(12);
  });

  it('runs on a stopped unit: the lists are not on the medium', async () => {
    const { unit } = makeUnit();
    unit.stopped = true;
    expect((await run(unit, rdd10(PLIST))).status).toBe(ScsiStatus.GOOD);
  });

  it('round-trips its CDB fields', () => {
    for (const e of defectCommands) {
      const f = {
        primary: true,
        grown: true,
        format: F.PHYSICAL_SECTOR,
        addressDescriptorIndex: e.cdbLength === 12 ? 77 : 0,
        allocationLength: 0x1234,
      };
      expect(e.decode(e.encode!(f))).toEqual(f);
    }
  });
});
