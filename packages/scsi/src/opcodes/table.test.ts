import { describe, expect, it } from 'vitest';
import type { OpcodeEntry } from '../core/command.js';
import { ScsiCheckCondition } from '../core/errors.js';
import { builtinEntries, createOpcodeTable, defaultOpcodeTable } from './index.js';
import { OpcodeSlot, OpcodeTable, OpcodeTableError, cdbLengthOf, serviceActionOf } from './table.js';

const entry = (over: Partial<OpcodeEntry>): OpcodeEntry => ({
  opcode: 0xc0,
  name: 'TEST',
  cdbLength: 6,
  direction: 'none',
  usage: [0xc0, 0, 0, 0, 0, 0],
  decode: () => ({}),
  handler: () => undefined,
  ...over,
});

describe('CDB length from the group code (SPC-5 4.2.5.1)', () => {
  it('group 0 → 6, 1-2 → 10, 4 → 16, 5 → 12, 0x7F → 8 + additional length', () => {
    expect(cdbLengthOf(Uint8Array.of(0x08))).toBe(6);
    expect(cdbLengthOf(Uint8Array.of(0x28))).toBe(10);
    expect(cdbLengthOf(Uint8Array.of(0x5a))).toBe(10);
    expect(cdbLengthOf(Uint8Array.of(0x88))).toBe(16);
    expect(cdbLengthOf(Uint8Array.of(0xa8))).toBe(12);
    expect(cdbLengthOf(Uint8Array.of(0x7f, 0, 0, 0, 0, 0, 0, 0x18))).toBe(32);
  });

  it('group 3 (reserved), 6 and 7 (vendor), empty and short 0x7F CDBs have no length', () => {
    for (const op of [0x60, 0x7e, 0xc0, 0xe0]) expect(cdbLengthOf(Uint8Array.of(op))).toBeUndefined();
    expect(cdbLengthOf(new Uint8Array(0))).toBeUndefined();
    expect(cdbLengthOf(Uint8Array.of(0x7f, 0))).toBeUndefined();
  });

  it('service action location: byte 1 bits 4-0, or bytes 8-9 of a variable-length CDB', () => {
    expect(serviceActionOf(Uint8Array.of(0x9e, 0xf0))).toBe(0x10);
    expect(serviceActionOf(Uint8Array.of(0x9e))).toBeUndefined();
    expect(serviceActionOf(Uint8Array.of(0x7f, 0, 0, 0, 0, 0, 0, 0x18, 0x12, 0x34))).toBe(0x1234);
    expect(serviceActionOf(Uint8Array.of(0x7f, 0, 0))).toBeUndefined();
  });
});

describe('OpcodeTable', () => {
  it('holds every built-in command once, each entry valid for its group', () => {
    const table = defaultOpcodeTable();
    expect(table.entries().length).toBe(builtinEntries().length);
    expect(defaultOpcodeTable()).toBe(table);
  });

  it('resolves a CDB to its slot, or answers with the CHECK CONDITION to send', () => {
    const table = createOpcodeTable();
    expect(table.resolve(Uint8Array.of(0, 0, 0, 0, 0, 0))).toBeInstanceOf(OpcodeSlot);
    const invalid = table.resolve(Uint8Array.of(0xc0, 0, 0, 0, 0, 0));
    expect(invalid).toBeInstanceOf(ScsiCheckCondition);
    expect((invalid as ScsiCheckCondition).reason).toBe('INVALID_COMMAND_OPERATION_CODE');
  });

  it('extra entries add commands or replace built-ins with the same opcode and service action', () => {
    const replaced = entry({ opcode: 0x00, name: 'MY TUR', usage: [0, 0, 0, 0, 0, 0] });
    const table = createOpcodeTable([entry({}), replaced]);
    expect(table.get(0xc0)?.name).toBe('TEST');
    expect(table.get(0x00)?.name).toBe('MY TUR');
    expect(table.clone().get(0x00)?.name).toBe('MY TUR');
    expect(defaultOpcodeTable().get(0x00)?.name).toBe('TEST UNIT READY');
  });

  it('rejects malformed entries with OpcodeTableError', () => {
    const table = new OpcodeTable();
    expect(() => table.set(entry({ opcode: 256 }))).toThrow(OpcodeTableError);
    expect(() => table.set(entry({ opcode: 0x28, usage: [0x28, 0, 0, 0, 0, 0] }))).toThrow(
      /group 1 CDBs are 10/,
    );
    expect(() => table.set(entry({ usage: [0xc0, 0, 0] }))).toThrow(/usage mask/);
    expect(() => table.set(entry({ usage: [0xc1, 0, 0, 0, 0, 0] }))).toThrow(/usage mask/);
    expect(() => table.set(entry({ cdbLength: 4, usage: [0xc0, 0, 0, 0] }))).toThrow(/CDB length/);
    const variable = { opcode: 0x7f, cdbLength: 32, usage: [0x7f, ...new Array(31).fill(0)] };
    expect(() => table.set(entry(variable))).toThrow(/need a service action/);
    expect(() =>
      table.set(
        entry({ ...variable, cdbLength: 11, serviceAction: 1, usage: [0x7f, ...new Array(10).fill(0)] }),
      ),
    ).toThrow(/variable-length/);
  });

  it('an opcode is either plain or dispatched by service action, never both', () => {
    const table = new OpcodeTable([entry({})]);
    expect(() => table.set(entry({ serviceAction: 1 }))).toThrow(/has no service actions/);
    const sa = new OpcodeTable([entry({ serviceAction: 1 })]);
    expect(sa.hasServiceActions(0xc0)).toBe(true);
    expect(() => sa.set(entry({}))).toThrow(/has service actions/);
  });

  it('the usage check ignores the matched service action bits and the 0x7F length byte', () => {
    const slot = new OpcodeSlot(entry({ serviceAction: 3 }));
    expect(slot.checkCdb(Uint8Array.of(0xc0, 0x03, 0, 0, 0, 0))).toBeUndefined();
    expect(slot.checkCdb(Uint8Array.of(0xc0, 0x23, 0, 0, 0, 0))?.details.fieldPointer).toEqual({
      inCdb: true,
      byte: 1,
      bit: 5,
    });
  });
});
