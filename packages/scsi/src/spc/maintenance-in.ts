import { be16, be32, putBe16, putBe32 } from '../core/bytes.js';
import type { CommandContext, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { invalidCdbField } from '../core/errors.js';
import type { LogicalUnit } from '../core/unit.js';
import { type AnyOpcodeEntry, usageFor } from '../opcodes/table.js';

export const MAINTENANCE_IN = 0xa3;
export const REPORT_SUPPORTED_OPERATION_CODES = 0x0c;
export const REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS = 0x0d;

/** REPORT SUPPORTED OPERATION CODES (SPC-5 6.35). */
export interface ReportOpcodesFields {
  /** REPORTING OPTIONS 0-3. */
  readonly reportingOptions: number;
  /** RCTD: return command timeouts descriptors. */
  readonly rctd: boolean;
  readonly requestedOpcode: number;
  readonly requestedServiceAction: number;
  readonly allocationLength: number;
}

/** SPC-5 Table 211 SUPPORT values. */
const SUPPORT_NOT_SUPPORTED = 0b001;
const SUPPORT_STANDARD = 0b011;
const TIMEOUTS_LENGTH = 12;

export const reportOpcodesEntry: OpcodeEntry<ReportOpcodesFields> = {
  opcode: MAINTENANCE_IN,
  serviceAction: REPORT_SUPPORTED_OPERATION_CODES,
  name: 'REPORT SUPPORTED OPERATION CODES',
  cdbLength: 12,
  direction: 'in',
  usage: [
    MAINTENANCE_IN,
    REPORT_SUPPORTED_OPERATION_CODES,
    0x87,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0x00,
    0x00,
  ],
  decode(cdb) {
    const reportingOptions = cdb[2]! & 0x07;
    if (reportingOptions > 3) throw invalidCdbField(2, 2);
    return {
      reportingOptions,
      rctd: (cdb[2]! & 0x80) !== 0,
      requestedOpcode: cdb[3]!,
      requestedServiceAction: be16(cdb, 4),
      allocationLength: be32(cdb, 6),
    };
  },
  encode(f) {
    const cdb = new Uint8Array(12);
    cdb[0] = MAINTENANCE_IN;
    cdb[1] = REPORT_SUPPORTED_OPERATION_CODES;
    cdb[2] = (f.rctd ? 0x80 : 0) | f.reportingOptions;
    cdb[3] = f.requestedOpcode;
    putBe16(cdb, 4, f.requestedServiceAction);
    putBe32(cdb, 6, f.allocationLength);
    return cdb;
  },
  allocationLength: (f) => f.allocationLength,
  handler: reportSupportedOperationCodes,
  allowedDuringSanitize: true,
  timeouts: { nominal: 1, recommended: 5 },
};

/** SPC-5 6.35.4 command timeouts descriptor. */
function timeoutsDescriptor(entry: AnyOpcodeEntry): number[] {
  const b = new Uint8Array(TIMEOUTS_LENGTH);
  putBe16(b, 0, 0x0a);
  putBe32(b, 4, entry.timeouts?.nominal ?? 0);
  putBe32(b, 8, entry.timeouts?.recommended ?? 0);
  return Array.from(b);
}

function reportSupportedOperationCodes(ctx: CommandContext<ReportOpcodesFields>): Uint8Array {
  const unit = ctx.unit as LogicalUnit;
  const table = unit.table;
  const f = ctx.fields;
  if (f.reportingOptions === 0) {
    // SPC-5 6.35.2 all_commands parameter data: what this unit offers.
    const entries = table.supportedEntries(unit);
    const size = 8 + (f.rctd ? TIMEOUTS_LENGTH : 0);
    const b = new Uint8Array(4 + entries.length * size);
    putBe32(b, 0, b.length - 4);
    entries.forEach((entry, i) => {
      const o = 4 + i * size;
      b[o] = entry.opcode;
      const hasAction = entry.serviceAction !== undefined;
      putBe16(b, o + 2, entry.serviceAction ?? 0);
      b[o + 5] = (f.rctd ? 0x02 : 0) | (hasAction ? 0x01 : 0); // CTDP, SERVACTV
      putBe16(b, o + 6, entry.cdbLength);
      if (f.rctd) b.set(timeoutsDescriptor(entry), o + 8);
    });
    return b;
  }
  const opcode = f.requestedOpcode;
  // An opcode none of whose service actions the unit offers is simply not supported.
  const withActions = table.hasServiceActions(opcode, unit);
  let entry: AnyOpcodeEntry | undefined;
  if (f.reportingOptions === 1) {
    // The opcode must not have service actions (SPC-5 Table 206).
    if (withActions) throw invalidCdbField(2, 2);
    entry = table.getSupported(unit, opcode);
  } else if (f.reportingOptions === 2) {
    if (!withActions && table.getSupported(unit, opcode) !== undefined) throw invalidCdbField(2, 2);
    entry = table.getSupported(unit, opcode, f.requestedServiceAction);
  } else {
    entry = withActions
      ? table.getSupported(unit, opcode, f.requestedServiceAction)
      : f.requestedServiceAction === 0
        ? table.getSupported(unit, opcode)
        : undefined;
  }
  // SPC-5 6.35.3 one_command parameter data.
  if (!entry) {
    const b = new Uint8Array(4);
    b[1] = SUPPORT_NOT_SUPPORTED;
    return b;
  }
  const b = new Uint8Array(4 + entry.cdbLength + (f.rctd ? TIMEOUTS_LENGTH : 0));
  b[1] = (f.rctd ? 0x80 : 0) | SUPPORT_STANDARD;
  putBe16(b, 2, entry.cdbLength);
  b.set(usageData(entry, unit), 4);
  if (f.rctd) b.set(timeoutsDescriptor(entry), 4 + entry.cdbLength);
  return b;
}

/** CDB USAGE DATA: the opcode, the service action in place, the unit's usage map elsewhere. */
export function usageData(entry: AnyOpcodeEntry, unit?: LogicalUnitState): Uint8Array {
  const usage = Uint8Array.from(unit === undefined ? entry.usage : usageFor(entry, unit));
  // SPC-5 6.35.3: byte 0 is the OPERATION CODE, whatever a unit-specific mask holds there.
  usage[0] = entry.opcode;
  if (entry.serviceAction !== undefined) {
    if (entry.opcode === 0x7f) putBe16(usage, 8, entry.serviceAction);
    else usage[1] = (usage[1]! & ~0x1f) | (entry.serviceAction & 0x1f);
  }
  return usage;
}

/** REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-5 6.36). */
export interface ReportTmfFields {
  /** REPD: return the extended parameter data. */
  readonly repd: boolean;
  readonly allocationLength: number;
}

export const reportTaskManagementEntry: OpcodeEntry<ReportTmfFields> = {
  opcode: MAINTENANCE_IN,
  serviceAction: REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS,
  name: 'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS',
  cdbLength: 12,
  direction: 'in',
  usage: [
    MAINTENANCE_IN,
    REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS,
    0x80,
    0x00,
    0x00,
    0x00,
    0xff,
    0xff,
    0xff,
    0xff,
    0x00,
    0x00,
  ],
  decode: (cdb) => ({ repd: (cdb[2]! & 0x80) !== 0, allocationLength: be32(cdb, 6) }),
  encode(f) {
    const cdb = new Uint8Array(12);
    cdb[0] = MAINTENANCE_IN;
    cdb[1] = REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS;
    cdb[2] = f.repd ? 0x80 : 0;
    putBe32(cdb, 6, f.allocationLength);
    return cdb;
  },
  allocationLength: (f) => f.allocationLength,
  handler: reportTaskManagementFunctions,
  allowedDuringSanitize: true,
  timeouts: { nominal: 1, recommended: 5 },
};

/**
 * The functions a SCSI target core (LIO) performs for this logical unit:
 * ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, QUERY TASK,
 * I_T NEXUS RESET.
 */
function reportTaskManagementFunctions(ctx: CommandContext<ReportTmfFields>): Uint8Array {
  const b = new Uint8Array(ctx.fields.repd ? 16 : 4);
  b[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x04; // ATS ATSS CTSS LURS QTS
  b[1] = 0x01; // ITNRS
  if (ctx.fields.repd) b[3] = 0x0c; // ADDITIONAL DATA LENGTH; TMFTMOV=0: no timeouts reported
  return b;
}
