import type { CommandContext, OpcodeEntry } from '../core/command.js';
import { ScsiCheckCondition, invalidCdbField } from '../core/errors.js';
import { flushBackend, isPromise } from '../core/io.js';
import type { LogicalUnit } from '../core/unit.js';

export const START_STOP_UNIT = 0x1b;
export const PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1e;

/** START STOP UNIT, SBC-4 5.25. */
export interface StartStopUnitFields {
  readonly immediate: boolean;
  readonly powerConditionModifier: number;
  readonly powerCondition: number;
  readonly noFlush: boolean;
  readonly loadEject: boolean;
  readonly start: boolean;
}

/** PREVENT ALLOW MEDIUM REMOVAL, SBC-4 5.14: 0 allow, 1 prevent. */
export interface PreventAllowFields {
  readonly prevent: number;
}

function startStopUnit(ctx: CommandContext<StartStopUnitFields>): undefined | Promise<undefined> {
  const unit = ctx.unit as LogicalUnit;
  const f = ctx.fields;
  if (f.start) {
    unit.stopped = false; // START=1 (with LOEJ: load) makes the medium ready
    return undefined;
  }
  // SBC-4 5.25: unloading while removal is prevented fails.
  if (f.loadEject && unit.mediumRemovalPrevented) throw new ScsiCheckCondition('MEDIUM_REMOVAL_PREVENTED');
  const stop = (): undefined => {
    unit.stopped = true;
    return undefined;
  };
  if (f.noFlush) return stop();
  const flushed = flushBackend(unit, ctx.signal);
  if (f.immediate) {
    // GOOD now; the unit stops when the cache is flushed.
    if (isPromise(flushed)) {
      stop();
      flushed.catch((error: unknown) => unit.logger.error({ err: error }, 'START STOP UNIT flush failed'));
      return undefined;
    }
    return stop();
  }
  return isPromise(flushed) ? flushed.then(stop) : stop();
}

export const startStopUnitEntry: OpcodeEntry<StartStopUnitFields> = {
  opcode: START_STOP_UNIT,
  name: 'START STOP UNIT',
  cdbLength: 6,
  direction: 'none',
  usage: [START_STOP_UNIT, 0x01, 0x00, 0x0f, 0xf7, 0x00],
  decode(cdb) {
    const powerCondition = cdb[4]! >>> 4;
    const powerConditionModifier = cdb[3]! & 0x0f;
    // Only START_VALID (0h) is supported: no power condition states.
    if (powerCondition !== 0) throw invalidCdbField(4, 7);
    if (powerConditionModifier !== 0) throw invalidCdbField(3, 3);
    return {
      immediate: (cdb[1]! & 0x01) !== 0,
      powerConditionModifier,
      powerCondition,
      noFlush: (cdb[4]! & 0x04) !== 0,
      loadEject: (cdb[4]! & 0x02) !== 0,
      start: (cdb[4]! & 0x01) !== 0,
    };
  },
  encode(f) {
    const cdb = new Uint8Array(6);
    cdb[0] = START_STOP_UNIT;
    cdb[1] = f.immediate ? 1 : 0;
    cdb[3] = f.powerConditionModifier & 0x0f;
    cdb[4] = (f.powerCondition << 4) | (f.noFlush ? 4 : 0) | (f.loadEject ? 2 : 0) | (f.start ? 1 : 0);
    return cdb;
  },
  handler: startStopUnit,
  timeouts: { nominal: 5, recommended: 30 },
};

export const preventAllowEntry: OpcodeEntry<PreventAllowFields> = {
  opcode: PREVENT_ALLOW_MEDIUM_REMOVAL,
  name: 'PREVENT ALLOW MEDIUM REMOVAL',
  cdbLength: 6,
  direction: 'none',
  usage: [PREVENT_ALLOW_MEDIUM_REMOVAL, 0x00, 0x00, 0x00, 0x03, 0x00],
  decode(cdb) {
    const prevent = cdb[4]! & 0x03;
    // 10b and 11b are obsolete for direct-access devices.
    if (prevent > 1) throw invalidCdbField(4, 1);
    return { prevent };
  },
  encode(f) {
    const cdb = new Uint8Array(6);
    cdb[0] = PREVENT_ALLOW_MEDIUM_REMOVAL;
    cdb[4] = f.prevent & 0x03;
    return cdb;
  },
  handler(ctx) {
    (ctx.unit as LogicalUnit).setMediumRemovalPrevented(ctx.nexus, ctx.fields.prevent === 1);
    return undefined;
  },
  timeouts: { nominal: 1, recommended: 5 },
};

export const miscCommands = [startStopUnitEntry, preventAllowEntry] as const;
