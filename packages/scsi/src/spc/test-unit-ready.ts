import type { OpcodeEntry } from '../core/command.js';

export const TEST_UNIT_READY = 0x00;

/** TEST UNIT READY (SPC-5 6.47): no fields. NOT READY states come from the executor. */
export type TestUnitReadyFields = Record<string, never>;

const NO_FIELDS: TestUnitReadyFields = Object.freeze({}) as TestUnitReadyFields;

export const testUnitReadyEntry: OpcodeEntry<TestUnitReadyFields> = {
  opcode: TEST_UNIT_READY,
  name: 'TEST UNIT READY',
  cdbLength: 6,
  direction: 'none',
  usage: [TEST_UNIT_READY, 0x00, 0x00, 0x00, 0x00, 0x00],
  decode: () => NO_FIELDS,
  encode: () => new Uint8Array(6),
  handler: () => undefined,
  // A stopped unit answers NOT READY / INITIALIZING COMMAND REQUIRED (SBC-4 4.20.2).
  mediumAccess: true,
  timeouts: { nominal: 1, recommended: 5 },
};
