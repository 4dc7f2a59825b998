import type { CommandContext, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { be16, be24, be32, be64, putBe16, putBe24, putBe32, putBe64 } from '../core/bytes.js';
import { invalidCdbField, invalidParameterField, ScsiCheckCondition } from '../core/errors.js';
import { ModePageCode, ModePageStore, modePageCodes, type PageControl } from './pages.js';

/** Usage bits of the CONTROL byte: NACA and the vendor bits are not supported. */
const CONTROL = 0x00;

export interface ModeSenseFields {
  /** DBD: return no block descriptors. */
  readonly disableBlockDescriptors: boolean;
  /** LLBAA (MODE SENSE(10) only): 16-byte block descriptors allowed. */
  readonly longLba: boolean;
  /** PC field: 0 current, 1 changeable, 2 default, 3 saved. */
  readonly pageControl: number;
  readonly pageCode: number;
  readonly subpageCode: number;
  readonly allocationLength: number;
  readonly control: number;
}

export interface ModeSelectFields {
  /** PF: pages follow the SPC page format (must be one). */
  readonly pageFormat: boolean;
  /** SP: save pages (not supported). */
  readonly savePages: boolean;
  readonly parameterListLength: number;
  readonly control: number;
}

const pageControls: readonly PageControl[] = ['current', 'changeable', 'default'];

/** SPC-5 6.14: PC, page code and subpage code, validated against the implemented pages. */
const checkPageSelection = (pageControl: number, pageCode: number, subpageCode: number): void => {
  if (pageCode !== ModePageCode.ALL_PAGES && !modePageCodes.includes(pageCode)) throw invalidCdbField(2, 5);
  // No subpages are implemented: subpage 00h, or FFh ("and all subpages").
  if (subpageCode !== 0x00 && subpageCode !== 0xff) throw invalidCdbField(3);
  if (pageControl === 3) {
    throw new ScsiCheckCondition('SAVING_PARAMETERS_NOT_SUPPORTED', {
      fieldPointer: { inCdb: true, byte: 2, bit: 7 },
    });
  }
};

const decodeModeSense6 = (cdb: Uint8Array): ModeSenseFields => {
  const fields: ModeSenseFields = {
    disableBlockDescriptors: (cdb[1]! & 0x08) !== 0,
    longLba: false,
    pageControl: cdb[2]! >> 6,
    pageCode: cdb[2]! & 0x3f,
    subpageCode: cdb[3]!,
    allocationLength: cdb[4]!,
    control: cdb[5]!,
  };
  checkPageSelection(fields.pageControl, fields.pageCode, fields.subpageCode);
  return fields;
};

const decodeModeSense10 = (cdb: Uint8Array): ModeSenseFields => {
  const fields: ModeSenseFields = {
    disableBlockDescriptors: (cdb[1]! & 0x08) !== 0,
    longLba: (cdb[1]! & 0x10) !== 0,
    pageControl: cdb[2]! >> 6,
    pageCode: cdb[2]! & 0x3f,
    subpageCode: cdb[3]!,
    allocationLength: be16(cdb, 7),
    control: cdb[9]!,
  };
  checkPageSelection(fields.pageControl, fields.pageCode, fields.subpageCode);
  return fields;
};

const encodeModeSense6 = (f: ModeSenseFields): Uint8Array => {
  const cdb = new Uint8Array(6);
  cdb[0] = 0x1a;
  cdb[1] = f.disableBlockDescriptors ? 0x08 : 0;
  cdb[2] = ((f.pageControl & 3) << 6) | (f.pageCode & 0x3f);
  cdb[3] = f.subpageCode;
  cdb[4] = f.allocationLength;
  cdb[5] = f.control;
  return cdb;
};

const encodeModeSense10 = (f: ModeSenseFields): Uint8Array => {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x5a;
  cdb[1] = (f.disableBlockDescriptors ? 0x08 : 0) | (f.longLba ? 0x10 : 0);
  cdb[2] = ((f.pageControl & 3) << 6) | (f.pageCode & 0x3f);
  cdb[3] = f.subpageCode;
  putBe16(cdb, 7, f.allocationLength);
  cdb[9] = f.control;
  return cdb;
};

/** The unit's ModePageStore (MODE SENSE/SELECT need more than the ModeState flags). */
export const pageStoreOf = (unit: LogicalUnitState): ModePageStore => {
  if (unit.modes instanceof ModePageStore) return unit.modes;
  throw new TypeError('MODE SENSE/SELECT need the unit modes to be a ModePageStore');
};

/** SBC-4 6.5.2: DPOFUA is set (DPO and FUA are supported); WP for write-protected units. */
const deviceSpecificParameter = (unit: LogicalUnitState, store: ModePageStore): number =>
  (unit.readOnly || store.readOnly ? 0x80 : 0) | 0x10;

/**
 * SBC-4 6.5.2 short (8-byte) or long (16-byte) LBA mode parameter block
 * descriptor. Nothing in it is changeable, so PC=01b returns zeros.
 */
const blockDescriptor = (unit: LogicalUnitState, long: boolean, pc: PageControl): Uint8Array => {
  const d = new Uint8Array(long ? 16 : 8);
  if (pc === 'changeable') return d;
  const { blockCount, blockSize } = unit.backend;
  if (long) {
    putBe64(d, 0, blockCount);
    putBe32(d, 12, blockSize);
  } else {
    putBe32(d, 0, Math.min(blockCount, 0xffff_ffff)); // FFFFFFFFh: too many blocks to express
    putBe24(d, 5, blockSize);
  }
  return d;
};

/** SPC-5 6.14 / 6.15: header, optional block descriptor, then the selected pages. */
const modeSense = (ctx: CommandContext<ModeSenseFields>, ten: boolean): Uint8Array => {
  const f = ctx.fields;
  const store = pageStoreOf(ctx.unit);
  const pc = pageControls[f.pageControl]!;
  const codes = f.pageCode === ModePageCode.ALL_PAGES ? modePageCodes : [f.pageCode];
  const pages = codes.map((code) => store.page(code, pc));
  const descriptor = f.disableBlockDescriptors ? undefined : blockDescriptor(ctx.unit, ten && f.longLba, pc);
  const headerLength = ten ? 8 : 4;
  const descriptorLength = descriptor?.length ?? 0;
  const total = headerLength + descriptorLength + pages.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  if (ten) {
    putBe16(out, 0, total - 2);
    out[3] = deviceSpecificParameter(ctx.unit, store);
    out[4] = descriptorLength === 16 ? 0x01 : 0; // LONGLBA
    putBe16(out, 6, descriptorLength);
  } else {
    // Four pages and a short descriptor take 68 bytes: always within the one-byte MODE DATA LENGTH.
    out[0] = total - 1;
    out[2] = deviceSpecificParameter(ctx.unit, store);
    out[3] = descriptorLength;
  }
  let at = headerLength;
  if (descriptor !== undefined) {
    out.set(descriptor, at);
    at += descriptor.length;
  }
  for (const p of pages) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

const decodeModeSelect = (cdb: Uint8Array, ten: boolean): ModeSelectFields => {
  const fields: ModeSelectFields = {
    pageFormat: (cdb[1]! & 0x10) !== 0,
    savePages: (cdb[1]! & 0x01) !== 0,
    parameterListLength: ten ? be16(cdb, 7) : cdb[4]!,
    control: cdb[ten ? 9 : 5]!,
  };
  // SPC-5 6.12: PF=0 would mean vendor-specific (SCSI-1) page formats.
  if (!fields.pageFormat) throw invalidCdbField(1, 4);
  if (fields.savePages) {
    throw new ScsiCheckCondition('SAVING_PARAMETERS_NOT_SUPPORTED', {
      fieldPointer: { inCdb: true, byte: 1, bit: 0 },
    });
  }
  return fields;
};

const encodeModeSelect = (f: ModeSelectFields, ten: boolean): Uint8Array => {
  const cdb = new Uint8Array(ten ? 10 : 6);
  cdb[0] = ten ? 0x55 : 0x15;
  cdb[1] = (f.pageFormat ? 0x10 : 0) | (f.savePages ? 0x01 : 0);
  if (ten) putBe16(cdb, 7, f.parameterListLength);
  else cdb[4] = f.parameterListLength;
  cdb[ten ? 9 : 5] = f.control;
  return cdb;
};

const parameterListLengthError = (): ScsiCheckCondition =>
  new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');

/** Most significant set bit of a byte (the bit pointer of the first offending bit). */
const highestBit = (value: number): number => 31 - Math.clz32(value);

/** Validate the block descriptor of a MODE SELECT: nothing in it may change. */
const checkBlockDescriptor = (unit: LogicalUnitState, data: Uint8Array, at: number, long: boolean): void => {
  const { blockCount, blockSize } = unit.backend;
  if (long) {
    for (let i = 8; i < 12; i++)
      if (data[at + i] !== 0) throw invalidParameterField(at + i, highestBit(data[at + i]!));
    const blocks = be64(data, at);
    // SBC-4 6.5.2: zero keeps the capacity; the only other accepted value is the current one.
    if (blocks !== 0 && blocks !== blockCount) throw invalidParameterField(at);
    if (be32(data, at + 12) !== blockSize) throw invalidParameterField(at + 12);
  } else {
    if (data[at + 4] !== 0) throw invalidParameterField(at + 4, highestBit(data[at + 4]!));
    const blocks = be32(data, at);
    if (blocks !== 0 && blocks !== Math.min(blockCount, 0xffff_ffff)) throw invalidParameterField(at);
    if (be24(data, at + 5) !== blockSize) throw invalidParameterField(at + 5);
  }
};

/**
 * SPC-5 6.12 / 6.13 MODE SELECT: validate the whole parameter list first
 * (header, block descriptor, every byte of every page against the changeable
 * mask), then apply it, so a rejected list changes nothing.
 */
const modeSelect = (ctx: CommandContext<ModeSelectFields>, ten: boolean): undefined => {
  const length = ctx.fields.parameterListLength;
  if (length === 0) return undefined; // SPC-5 6.12: not an error, nothing changes
  if (ctx.dataOut.length < length) throw parameterListLengthError();
  const data = ctx.dataOut.subarray(0, length);
  const store = pageStoreOf(ctx.unit);
  const headerLength = ten ? 8 : 4;
  if (length < headerLength) throw parameterListLengthError();
  // MODE DATA LENGTH is reserved in MODE SELECT and commonly echoed from MODE SENSE: ignored.
  // The device-specific parameter (WP undefined, DPOFUA reserved on MODE SELECT, SBC-4 6.5.2) is ignored too.
  const mediumTypeAt = ten ? 2 : 1;
  if (data[mediumTypeAt] !== 0) throw invalidParameterField(mediumTypeAt);
  let longLba = false;
  if (ten) {
    if ((data[4]! & 0xfe) !== 0) throw invalidParameterField(4, highestBit(data[4]! & 0xfe));
    if (data[5] !== 0) throw invalidParameterField(5, highestBit(data[5]!));
    longLba = (data[4]! & 0x01) !== 0;
  }
  const descriptorLengthAt = ten ? 6 : 3;
  const descriptorLength = ten ? be16(data, 6) : data[3]!;
  if (descriptorLength !== 0 && descriptorLength !== (longLba ? 16 : 8))
    throw invalidParameterField(descriptorLengthAt);
  if (headerLength + descriptorLength > length) throw parameterListLengthError();
  if (descriptorLength !== 0) checkBlockDescriptor(ctx.unit, data, headerLength, longLba);

  const updates: Array<readonly [number, Uint8Array]> = [];
  let at = headerLength + descriptorLength;
  while (at < length) {
    if (length - at < 2) throw parameterListLengthError();
    const first = data[at]!;
    if ((first & 0x40) !== 0) throw invalidParameterField(at, 6); // SPF: no subpages are implemented
    const code = first & 0x3f;
    const mask = store.changeableMask(code);
    if (mask === undefined) throw invalidParameterField(at, 5);
    if (data[at + 1]! + 2 !== mask.length) throw invalidParameterField(at + 1);
    if (at + mask.length > length) throw parameterListLengthError();
    const current = store.page(code, 'current');
    for (let i = 2; i < mask.length; i++) {
      const offending = (data[at + i]! ^ current[i]!) & ~mask[i]!;
      if (offending !== 0) throw invalidParameterField(at + i, highestBit(offending));
    }
    updates.push([code, data.slice(at, at + mask.length)]);
    at += mask.length;
  }
  let changed = false;
  for (const [code, bytes] of updates) if (store.apply(code, bytes)) changed = true;
  // SPC-5 6.12: the other I_T nexuses learn of the change through a unit attention.
  if (changed) ctx.unit.raiseUnitAttention('MODE_PARAMETERS_CHANGED', ctx.nexus);
  return undefined;
};

/** SBC-4 4.11.2: MODE SENSE of these pages (subpage 00h) is allowed during sanitize. */
const SANITIZE_ALLOWED_PAGES = new Set<number>([
  ModePageCode.CACHING,
  ModePageCode.CONTROL,
  ModePageCode.INFORMATIONAL_EXCEPTIONS_CONTROL,
]);
const senseAllowedDuringSanitize = (cdb: Uint8Array): boolean =>
  SANITIZE_ALLOWED_PAGES.has(cdb[2]! & 0x3f) && cdb[3] === 0;

const modeSense6: OpcodeEntry<ModeSenseFields> = {
  opcode: 0x1a,
  name: 'MODE SENSE(6)',
  cdbLength: 6,
  direction: 'in',
  usage: [0x1a, 0x08, 0xff, 0xff, 0xff, CONTROL],
  decode: decodeModeSense6,
  encode: encodeModeSense6,
  allocationLength: (f) => f.allocationLength,
  handler: (ctx) => modeSense(ctx, false),
  allowedDuringSanitize: senseAllowedDuringSanitize,
};

const modeSense10: OpcodeEntry<ModeSenseFields> = {
  opcode: 0x5a,
  name: 'MODE SENSE(10)',
  cdbLength: 10,
  direction: 'in',
  usage: [0x5a, 0x18, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, CONTROL],
  decode: decodeModeSense10,
  encode: encodeModeSense10,
  allocationLength: (f) => f.allocationLength,
  handler: (ctx) => modeSense(ctx, true),
  allowedDuringSanitize: senseAllowedDuringSanitize,
};

const modeSelect6: OpcodeEntry<ModeSelectFields> = {
  opcode: 0x15,
  name: 'MODE SELECT(6)',
  cdbLength: 6,
  direction: 'out',
  usage: [0x15, 0x11, 0x00, 0x00, 0xff, CONTROL],
  decode: (cdb) => decodeModeSelect(cdb, false),
  encode: (f) => encodeModeSelect(f, false),
  dataOutLength: (f) => f.parameterListLength,
  handler: (ctx) => modeSelect(ctx, false),
};

const modeSelect10: OpcodeEntry<ModeSelectFields> = {
  opcode: 0x55,
  name: 'MODE SELECT(10)',
  cdbLength: 10,
  direction: 'out',
  usage: [0x55, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, CONTROL],
  decode: (cdb) => decodeModeSelect(cdb, true),
  encode: (f) => encodeModeSelect(f, true),
  dataOutLength: (f) => f.parameterListLength,
  handler: (ctx) => modeSelect(ctx, true),
};

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const modeCommands: OpcodeEntry<any>[] = [modeSense6, modeSense10, modeSelect6, modeSelect10];
