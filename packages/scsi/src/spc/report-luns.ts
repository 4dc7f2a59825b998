import { be32, putBe32 } from '../core/bytes.js';
import type { CommandContext, OpcodeEntry } from '../core/command.js';
import { invalidCdbField } from '../core/errors.js';
import type { LogicalUnit } from '../core/unit.js';

export const REPORT_LUNS = 0xa0;

/** REPORT LUNS (SPC-5 6.33). */
export interface ReportLunsFields {
  readonly selectReport: number;
  readonly allocationLength: number;
}

export const reportLunsEntry: OpcodeEntry<ReportLunsFields> = {
  opcode: REPORT_LUNS,
  name: 'REPORT LUNS',
  cdbLength: 12,
  direction: 'in',
  usage: [REPORT_LUNS, 0x00, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
  decode(cdb) {
    const selectReport = cdb[2]!;
    // 00h all, 01h well known only, 02h all; 10h-12h administrative/subsidiary (SPC-5 Table 162).
    if (selectReport > 0x02 && (selectReport < 0x10 || selectReport > 0x12)) throw invalidCdbField(2);
    return { selectReport, allocationLength: be32(cdb, 6) };
  },
  encode(f) {
    const cdb = new Uint8Array(12);
    cdb[0] = REPORT_LUNS;
    cdb[2] = f.selectReport;
    putBe32(cdb, 6, f.allocationLength);
    return cdb;
  },
  allocationLength: (f) => f.allocationLength,
  handler: reportLuns,
  reportsNoUnitAttention: true,
  allowedDuringFormat: true,
  allowedDuringSanitize: true,
  timeouts: { nominal: 1, recommended: 5 },
};

/** SAM-5 4.7: single level LUN; peripheral addressing below 256, flat space above. */
export function encodeLun(lun: number): Uint8Array {
  const b = new Uint8Array(8);
  if (lun < 256) b[1] = lun;
  else {
    b[0] = 0x40 | ((lun >>> 8) & 0x3f);
    b[1] = lun & 0xff;
  }
  return b;
}

function reportLuns(ctx: CommandContext<ReportLunsFields>): Uint8Array {
  const unit = ctx.unit as LogicalUnit;
  // This library has no well-known or administrative logical units.
  const select = ctx.fields.selectReport;
  const luns = select === 0x01 || select === 0x10 ? [] : unit.luns;
  const b = new Uint8Array(8 + luns.length * 8);
  putBe32(b, 0, luns.length * 8);
  for (const [i, lun] of luns.entries()) b.set(encodeLun(lun), 8 + i * 8);
  return b;
}
