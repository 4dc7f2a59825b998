import type { ProvisioningUsage } from '../core/backend.js';
import { be16, putBe16, putBe32 } from '../core/bytes.js';
import type { CommandContext, OpcodeEntry } from '../core/command.js';
import { invalidCdbField, invalidParameterField, ScsiCheckCondition } from '../core/errors.js';
import type { MaybePromise } from '../core/io.js';
import type { LogicalUnit } from '../core/unit.js';
import { reportsProvisioningLog, thresholdExponent } from './inquiry.js';

const LOG_SELECT = 0x4c;
const LOG_SENSE = 0x4d;
const CONTROL = 0x00;

/** One log parameter (SPC-5 7.3.2): its code and value; the control byte is the same for all of them. */
interface LogParameter {
  readonly code: number;
  readonly value: Uint8Array;
}

/**
 * Every parameter here is a binary format list parameter (FORMAT AND LINKING
 * 11b) that is never saved (TSD=1): the values are computed when asked for.
 */
const LIST_PARAMETER_CONTROL = 0x20 | 0x03;

interface LogPage {
  readonly code: number;
  readonly subpage: number;
  readonly name: string;
  /** Whether the unit offers the page (default: always). */
  readonly offered?: (unit: LogicalUnit) => boolean;
  /** The log parameters, in ascending code order; absent for the pages that list pages. */
  readonly parameters?: (unit: LogicalUnit) => MaybePromise<LogParameter[]>;
  /** The page/subpage codes it lists (the supported pages pages, which hold no parameters). */
  readonly list?: (unit: LogicalUnit) => number[];
}

const offeredPages = (unit: LogicalUnit): LogPage[] =>
  LOG_PAGES.filter((page) => page.offered === undefined || page.offered(unit));

const SCOPE_DEDICATED = 0x01;
const SCOPE_SHARED = 0x02;

/** SBC-4 6.4.5.2: a resource count in threshold sets (at most 32 bits) and its scope. */
const resourceCount = (code: number, sets: number, scope: number): LogParameter => {
  const value = new Uint8Array(8);
  putBe32(value, 0, Math.min(sets, 0xffff_ffff));
  value[4] = scope;
  return { code, value };
};

/**
 * SBC-4 6.4.5: Available (0001h) and Used (0002h) LBA Mapping Resource Count,
 * in threshold sets of 2^THRESHOLD EXPONENT blocks (VPD B2h). Available is
 * rounded down and used up; the unit's own blocks are dedicated to it, a
 * filesystem's free space is shared.
 */
const provisioningParameters = async (unit: LogicalUnit): Promise<LogParameter[]> => {
  let usage: ProvisioningUsage;
  try {
    usage = await unit.backend.provisioningUsage!();
  } catch (error) {
    // A host failure (fstat, statfs...), not a medium error: HARDWARE ERROR / INTERNAL TARGET FAILURE, logged.
    throw new Error('the backend could not report its provisioning usage', { cause: error });
  }
  const setSize = 2 ** thresholdExponent(unit);
  const mapped = Math.min(Math.max(0, usage.mappedBlocks), unit.backend.blockCount);
  const parameters: LogParameter[] = [];
  if (usage.availableBlocks !== undefined) {
    const scope = usage.availableShared ? SCOPE_SHARED : SCOPE_DEDICATED;
    parameters.push(resourceCount(0x0001, Math.floor(Math.max(0, usage.availableBlocks) / setSize), scope));
  }
  parameters.push(resourceCount(0x0002, Math.ceil(mapped / setSize), SCOPE_DEDICATED));
  return parameters;
};

/**
 * SPC-5 Informational Exceptions log page, its general parameter: no informational
 * exception condition (ASC/ASCQ 00h), no temperature sensor (FFh).
 */
const informationalExceptions = (): LogParameter[] => [
  { code: 0x0000, value: Uint8Array.of(0x00, 0x00, 0xff) },
];

const LOG_PAGES: readonly LogPage[] = [
  {
    code: 0x00,
    subpage: 0x00,
    name: 'Supported Log Pages',
    list: (unit) => offeredPages(unit).flatMap((page) => (page.subpage === 0 ? [page.code] : [])),
  },
  {
    code: 0x00,
    subpage: 0xff,
    name: 'Supported Log Pages and Subpages',
    list: (unit) => offeredPages(unit).flatMap((page) => [page.code, page.subpage]),
  },
  {
    code: 0x0c,
    subpage: 0x00,
    name: 'Logical Block Provisioning',
    // Offered with VPD B2h THRESHOLD EXPONENT non-zero, from the same predicate.
    offered: reportsProvisioningLog,
    parameters: provisioningParameters,
  },
  { code: 0x2f, subpage: 0x00, name: 'Informational Exceptions', parameters: informationalExceptions },
];

/** Page and subpage codes of every log page implemented, and their names (docs, tests). */
export const supportedLogPages = (): { code: number; subpage: number; name: string }[] =>
  LOG_PAGES.map(({ code, subpage, name }) => ({ code, subpage, name }));

/** The offered page with these codes, else INVALID FIELD IN CDB at the page code, or at the subpage code. */
const pageFor = (unit: LogicalUnit, pageCode: number, subpageCode: number): LogPage => {
  const pages = offeredPages(unit);
  const page = pages.find((p) => p.code === pageCode && p.subpage === subpageCode);
  if (page !== undefined) return page;
  throw pages.some((p) => p.code === pageCode) ? invalidCdbField(3) : invalidCdbField(2, 5);
};

/** Bytes 2-3 of LOG SENSE and LOG SELECT: PC, PAGE CODE, SUBPAGE CODE. */
export interface LogPageSelection {
  /** PC: which values (threshold, cumulative, their defaults). */
  readonly pageControl: number;
  readonly pageCode: number;
  readonly subpageCode: number;
}

const decodePageSelection = (cdb: Uint8Array): LogPageSelection => ({
  pageControl: cdb[2]! >> 6,
  pageCode: cdb[2]! & 0x3f,
  subpageCode: cdb[3]!,
});

const encodePageSelection = (cdb: Uint8Array, f: LogPageSelection): void => {
  cdb[2] = ((f.pageControl & 0x03) << 6) | (f.pageCode & 0x3f);
  cdb[3] = f.subpageCode;
};

/** LOG SENSE (SPC-5 6.8). PC is ignored: every parameter here is a list parameter. */
export interface LogSenseFields extends LogPageSelection {
  /** PARAMETER POINTER: the lowest parameter code to return. */
  readonly parameterPointer: number;
  readonly allocationLength: number;
  readonly control: number;
}

async function logSense(ctx: CommandContext<LogSenseFields>): Promise<Uint8Array> {
  const unit = ctx.unit as LogicalUnit;
  const f = ctx.fields;
  const page = pageFor(unit, f.pageCode, f.subpageCode);
  let body: Uint8Array;
  if (page.list !== undefined) {
    // No parameter codes at all: any pointer is above the largest one.
    if (f.parameterPointer !== 0) throw invalidCdbField(5);
    body = Uint8Array.from(page.list(unit));
  } else {
    const all = await page.parameters!(unit);
    // SPC-5 6.8: start at the pointer's code or the next one above; beyond the largest is invalid.
    if (f.parameterPointer > (all.at(-1)?.code ?? 0)) throw invalidCdbField(5);
    const parameters = all.filter((p) => p.code >= f.parameterPointer);
    body = new Uint8Array(parameters.reduce((n, p) => n + 4 + p.value.length, 0));
    let at = 0;
    for (const p of parameters) {
      putBe16(body, at, p.code);
      body[at + 2] = LIST_PARAMETER_CONTROL;
      body[at + 3] = p.value.length;
      body.set(p.value, at + 4);
      at += 4 + p.value.length;
    }
  }
  const out = new Uint8Array(4 + body.length);
  // DS=1 on the parameter pages: nothing is saveable. SPF=1 with a subpage.
  out[0] = (page.parameters !== undefined ? 0x80 : 0) | (page.subpage !== 0 ? 0x40 : 0) | page.code;
  out[1] = page.subpage;
  putBe16(out, 2, body.length);
  out.set(body, 4);
  return out;
}

export const logSenseEntry: OpcodeEntry<LogSenseFields> = {
  opcode: LOG_SENSE,
  name: 'LOG SENSE',
  cdbLength: 10,
  direction: 'in',
  // Byte 1: PPC is obsolete and SP (saving) is not implemented, so both are INVALID FIELD IN CDB (SPC-5 6.8).
  usage: [LOG_SENSE, 0x00, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, CONTROL],
  decode: (cdb) => ({
    ...decodePageSelection(cdb),
    parameterPointer: be16(cdb, 5),
    allocationLength: be16(cdb, 7),
    control: cdb[9]!,
  }),
  encode: (f) => {
    const cdb = new Uint8Array(10);
    cdb[0] = LOG_SENSE;
    encodePageSelection(cdb, f);
    putBe16(cdb, 5, f.parameterPointer);
    putBe16(cdb, 7, f.allocationLength);
    cdb[9] = f.control;
    return cdb;
  },
  allocationLength: (f) => f.allocationLength,
  handler: logSense,
  timeouts: { nominal: 1, recommended: 5 },
};

/** LOG SELECT (SPC-5 6.7). */
export interface LogSelectFields extends LogPageSelection {
  /** PCR: reset the parameters to their defaults (with no parameter list). */
  readonly parameterCodeReset: boolean;
  readonly parameterListLength: number;
  readonly control: number;
}

/** SPC-5 6.7.2 Table 185: with no parameter list, page 00h subpage 00h (or FFh) means every page. */
const checkSelectedPages = (unit: LogicalUnit, f: LogSelectFields): void => {
  if (f.subpageCode === 0xff || (f.pageCode === 0 && f.subpageCode === 0)) {
    if (!offeredPages(unit).some((p) => p.code === f.pageCode)) throw invalidCdbField(2, 5);
    return;
  }
  pageFor(unit, f.pageCode, f.subpageCode);
};

/**
 * SPC-5 6.7.1: check each log page of the list. Every parameter here is
 * computed and never changeable (SBC-4 Table 196 "Never"), so a page may be
 * sent only without parameters.
 */
const checkParameterList = (unit: LogicalUnit, data: Uint8Array): void => {
  const pages = offeredPages(unit);
  let previous = -1;
  for (let at = 0; at < data.length; ) {
    if (at + 4 > data.length) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
    const spf = (data[at]! & 0x40) !== 0;
    const code = data[at]! & 0x3f;
    const subpage = data[at + 1]!;
    if (spf !== (subpage !== 0)) throw invalidParameterField(at, 6);
    // Pages come in ascending page and subpage order, and only pages the unit offers.
    const order = (code << 8) | subpage;
    if (order <= previous || !pages.some((p) => p.code === code && p.subpage === subpage)) {
      throw invalidParameterField(at, 5);
    }
    previous = order;
    const length = be16(data, at + 2);
    if (at + 4 + length > data.length) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
    if (length > 0) throw invalidParameterField(at + 4); // its first parameter's PARAMETER CODE
    at += 4;
  }
};

function logSelect(ctx: CommandContext<LogSelectFields>): undefined {
  const unit = ctx.unit as LogicalUnit;
  const f = ctx.fields;
  if (f.parameterListLength === 0) {
    // SPC-5 6.7.2 Table 186: resets (PCR=1, or PC 1xb) find nothing to reset here, and PC 0xb changes nothing.
    checkSelectedPages(unit, f);
    return undefined;
  }
  // SBC-4 Table 178 note a: PCR=1 goes with no parameter list.
  if (f.parameterCodeReset) throw invalidCdbField(1, 1);
  // SPC-5 6.7.1: a parameter list names its pages itself, so the CDB's codes are zero.
  if (f.pageCode !== 0) throw invalidCdbField(2, 5);
  if (f.subpageCode !== 0) throw invalidCdbField(3);
  checkParameterList(unit, ctx.dataOut);
  return undefined;
}

export const logSelectEntry: OpcodeEntry<LogSelectFields> = {
  opcode: LOG_SELECT,
  name: 'LOG SELECT',
  cdbLength: 10,
  direction: 'out',
  // Byte 1: PCR; SP (saving) is not implemented, so it is INVALID FIELD IN CDB (SPC-5 6.7.2 Table 186 note a).
  usage: [LOG_SELECT, 0x02, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, CONTROL],
  decode: (cdb) => ({
    ...decodePageSelection(cdb),
    parameterCodeReset: (cdb[1]! & 0x02) !== 0,
    parameterListLength: be16(cdb, 7),
    control: cdb[9]!,
  }),
  encode: (f) => {
    const cdb = new Uint8Array(10);
    cdb[0] = LOG_SELECT;
    cdb[1] = f.parameterCodeReset ? 0x02 : 0;
    encodePageSelection(cdb, f);
    putBe16(cdb, 7, f.parameterListLength);
    cdb[9] = f.control;
    return cdb;
  },
  dataOutLength: (f) => f.parameterListLength,
  handler: logSelect,
  timeouts: { nominal: 1, recommended: 5 },
};

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const logCommands: OpcodeEntry<any>[] = [logSelectEntry, logSenseEntry];
