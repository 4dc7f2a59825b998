import type { CommandContext, OpcodeEntry } from '../core/command.js';
import type { LogicalUnit } from '../core/unit.js';
import { SenseReasons } from '../sense/reasons.js';
import { encodeSense } from '../sense/sense.js';

export const REQUEST_SENSE = 0x03;

/** REQUEST SENSE (SPC-5 6.39). */
export interface RequestSenseFields {
  /** DESC: descriptor-format sense data. */
  readonly descriptor: boolean;
  readonly allocationLength: number;
}

export const requestSenseEntry: OpcodeEntry<RequestSenseFields> = {
  opcode: REQUEST_SENSE,
  name: 'REQUEST SENSE',
  cdbLength: 6,
  direction: 'in',
  usage: [REQUEST_SENSE, 0x01, 0x00, 0x00, 0xff, 0x00],
  decode: (cdb) => ({ descriptor: (cdb[1]! & 0x01) !== 0, allocationLength: cdb[4]! }),
  encode(f) {
    const cdb = new Uint8Array(6);
    cdb[0] = REQUEST_SENSE;
    cdb[1] = f.descriptor ? 1 : 0;
    cdb[4] = f.allocationLength;
    return cdb;
  },
  allocationLength: (f) => f.allocationLength,
  handler: requestSense,
  reportsNoUnitAttention: true,
  allowedDuringFormat: true,
  allowedDuringSanitize: true,
  timeouts: { nominal: 1, recommended: 5 },
};

/**
 * The sense data describing the unit's state for this I_T nexus: a pending
 * unit attention (returned and cleared, SAM-5 5.14), FORMAT or SANITIZE IN
 * PROGRESS with progress, a failed sanitize, the stopped state, else NO SENSE.
 * Status is GOOD.
 */
function requestSense(ctx: CommandContext<RequestSenseFields>): Uint8Array {
  const unit = ctx.unit as LogicalUnit;
  const format = ctx.fields.descriptor ? 'descriptor' : 'fixed';
  const attention = unit.takeUnitAttention(ctx.nexus);
  if (attention) return encodeSense(attention, format);
  if (unit.format.active) {
    return encodeSense(
      { ...SenseReasons.NOT_READY_FORMAT_IN_PROGRESS, progress: unit.format.progress },
      format,
    );
  }
  if (unit.sanitize.active) {
    return encodeSense(
      { ...SenseReasons.NOT_READY_SANITIZE_IN_PROGRESS, progress: unit.sanitize.progress },
      format,
    );
  }
  // SBC-4 4.11.4: the failure lasts until a sanitize succeeds or is exited; polling reports it.
  if (unit.sanitize.failed) return encodeSense(SenseReasons.SANITIZE_COMMAND_FAILED, format);
  if (unit.stopped) return encodeSense(SenseReasons.NOT_READY_INITIALIZING_COMMAND_REQUIRED, format);
  return encodeSense(SenseReasons.NO_ADDITIONAL_SENSE, format);
}
