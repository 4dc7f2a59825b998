import { be16, be32, putBe16, putBe32 } from '../core/bytes.js';
import type { CommandContext, OpcodeEntry } from '../core/command.js';
import { ScsiCheckCondition, invalidCdbField } from '../core/errors.js';

/** READ DEFECT DATA(10/12) fields, SBC-4 5.19-5.20. */
export interface ReadDefectDataFields {
  /** REQ_PLIST: return the primary defect list. */
  readonly primary: boolean;
  /** REQ_GLIST: return the grown defect list. */
  readonly grown: boolean;
  /** DEFECT LIST FORMAT requested (see DefectListFormat). */
  readonly format: number;
  /** ADDRESS DESCRIPTOR INDEX (12 only): the first descriptor to return. */
  readonly addressDescriptorIndex: number;
  readonly allocationLength: number;
}

export const READ_DEFECT_DATA_10 = 0x37;
export const READ_DEFECT_DATA_12 = 0xb7;

/** SBC-4 address descriptor formats (the FORMAT UNIT defect list formats). */
export const DefectListFormat = {
  SHORT_BLOCK: 0b000,
  EXTENDED_BYTES_FROM_INDEX: 0b001,
  EXTENDED_PHYSICAL_SECTOR: 0b010,
  LONG_BLOCK: 0b011,
  BYTES_FROM_INDEX: 0b100,
  PHYSICAL_SECTOR: 0b101,
  VENDOR_SPECIFIC: 0b110,
} as const;

/** 111b is a reserved code value. */
const RESERVED_FORMAT = 0b111;

/** What the lists are given in when the requested format cannot be: any LBA fits a long block descriptor. */
const DEFAULT_FORMAT = DefectListFormat.LONG_BLOCK;

/**
 * The unit has a primary and a grown defect list, both empty. An empty list can be given
 * in every defined address descriptor format, so each is returned as requested; there is
 * no vendor-specific format, so that request gets the default format, and then (SBC-4
 * 5.19.1: the lists were transferred in a format other than the one requested) RECOVERED
 * ERROR / DEFECT LIST NOT FOUND after the data. A header-only request (neither list) has
 * no list in the wrong format: GOOD.
 */
function readDefectData(ctx: CommandContext<ReadDefectDataFields>, headerLength: 4 | 8): Uint8Array {
  const f = ctx.fields;
  const honoured = f.format !== DefectListFormat.VENDOR_SPECIFIC;
  const header = new Uint8Array(headerLength);
  // PLISTV/GLISTV: the lists asked for are in the data; DEFECT LIST LENGTH 0.
  header[1] = (f.primary ? 0x10 : 0) | (f.grown ? 0x08 : 0) | (honoured ? f.format : DEFAULT_FORMAT);
  if (!honoured && (f.primary || f.grown)) {
    throw new ScsiCheckCondition('RECOVERED_ERROR_DEFECT_LIST_NOT_FOUND', { dataIn: header });
  }
  return header;
}

/** REQ_PLIST, REQ_GLIST and DEFECT LIST FORMAT share one byte; 111b is refused at its bit 2. */
function listRequest(byte: number, at: number): Pick<ReadDefectDataFields, 'primary' | 'grown' | 'format'> {
  const format = byte & 0x07;
  if (format === RESERVED_FORMAT) throw invalidCdbField(at, 2);
  return { primary: (byte & 0x10) !== 0, grown: (byte & 0x08) !== 0, format };
}

const requestByte = (f: ReadDefectDataFields): number =>
  (f.primary ? 0x10 : 0) | (f.grown ? 0x08 : 0) | (f.format & 0x07);

/**
 * (10): the request in byte 2, ALLOCATION LENGTH in 7-8, a 4-byte header. (12): the request
 * in byte 1, ADDRESS DESCRIPTOR INDEX in 2-5, ALLOCATION LENGTH in 6-9, an 8-byte header;
 * any index is past the (empty) lists, so DEFECT LIST LENGTH stays 0 (SBC-4 5.20.2).
 */
function defectEntry(opcode: number, name: string, form: 10 | 12): OpcodeEntry<ReadDefectDataFields> {
  const short = form === 10;
  const requestAt = short ? 2 : 1;
  const usage = short
    ? [opcode, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00]
    : [opcode, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00];
  return {
    opcode,
    name,
    cdbLength: form,
    direction: 'in',
    usage,
    decode: (cdb) => ({
      ...listRequest(cdb[requestAt]!, requestAt),
      addressDescriptorIndex: short ? 0 : be32(cdb, 2),
      allocationLength: short ? be16(cdb, 7) : be32(cdb, 6),
    }),
    encode(f) {
      const cdb = new Uint8Array(form);
      cdb[0] = opcode;
      cdb[requestAt] = requestByte(f);
      if (short) putBe16(cdb, 7, f.allocationLength);
      else {
        putBe32(cdb, 2, f.addressDescriptorIndex);
        putBe32(cdb, 6, f.allocationLength);
      }
      return cdb;
    },
    allocationLength: (f) => f.allocationLength,
    handler: (ctx) => readDefectData(ctx, short ? 4 : 8),
    timeouts: { nominal: 1, recommended: 5 },
  };
}

export const defectCommands: OpcodeEntry<ReadDefectDataFields>[] = [
  defectEntry(READ_DEFECT_DATA_10, 'READ DEFECT DATA(10)', 10),
  defectEntry(READ_DEFECT_DATA_12, 'READ DEFECT DATA(12)', 12),
];
