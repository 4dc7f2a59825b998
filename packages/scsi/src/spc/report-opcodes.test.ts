import { describe, expect, it } from 'vitest';
import { be16, be32 } from '../core/bytes.js';
import { decodeSense } from '../sense/sense.js';
import { expectCheck, expectGood, makeUnit, run } from '../testing/harness.js';
import { usageData } from './maintenance-in.js';

const rsoc = (options: number, opcode = 0, sa = 0, rctd = false) => [
  0xa3,
  0x0c,
  (rctd ? 0x80 : 0) | options,
  opcode,
  sa >> 8,
  sa & 0xff,
  0,
  0,
  0x40,
  0,
  0,
  0,
];

describe('REPORT SUPPORTED OPERATION CODES (SPC-5 6.35)', () => {
  it('option 0 lists every table entry: 8-byte descriptors, SERVACTV, CDB length', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, rsoc(0)));
    const entries = unit.table.supportedEntries(unit);
    expect(be32(d, 0)).toBe(entries.length * 8);
    expect(d.length).toBe(4 + entries.length * 8);
    const listed = new Set<string>();
    for (let o = 4; o < d.length; o += 8) {
      const servactv = d[o + 5]! & 1;
      listed.add(servactv ? `${d[o]}/${be16(d, o + 2)}` : `${d[o]}`);
      expect(d[o + 5]! & 0x02).toBe(0); // CTDP without RCTD
      expect(unit.table.get(d[o]!, servactv ? be16(d, o + 2) : undefined)?.cdbLength).toBe(be16(d, o + 6));
    }
    // TUR, INQUIRY, REQUEST SENSE, READ(10), READ(32), WRITE(32), RSOC, RSTMF, READ CAPACITY(16)
    for (const e of ['0', '18', '3', '40', '127/9', '127/11', '163/12', '163/13', '158/16']) {
      expect(listed.has(e), e).toBe(true);
    }
    expect(listed.size).toBe(entries.length);
  });

  it('RCTD adds a 12-byte command timeouts descriptor to each', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, rsoc(0, 0, 0, true)));
    const count = unit.table.supportedEntries(unit).length;
    expect(be32(d, 0)).toBe(count * 20);
    expect(d[4 + 5]! & 0x02).toBe(0x02);
    expect(be16(d, 4 + 8)).toBe(0x0a);
  });

  it('option 1: one command without service actions, with its CDB usage data', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, rsoc(1, 0x28)));
    expect([d[0], d[1], be16(d, 2)]).toEqual([0, 0x03, 10]);
    expect([...d.subarray(4, 14)]).toEqual(unit.table.get(0x28)!.usage);
  });

  it('one command, options 1-3: byte 0 of the CDB USAGE DATA is the opcode, for every command', async () => {
    const { unit } = makeUnit({ config: { extendedCopy: true, maxAtomicTransferBlocks: 8 } });
    for (const entry of unit.table.entries()) {
      const sa = entry.serviceAction ?? 0;
      const options = entry.serviceAction === undefined ? [1, 3] : [2, 3];
      for (const option of options) {
        const d = expectGood(await run(unit, rsoc(option, entry.opcode, sa)));
        expect([d[1], be16(d, 2), d[4]], `${entry.name} option ${option}`).toEqual([
          0x03,
          entry.cdbLength,
          entry.opcode,
        ]);
      }
    }
    // A unit-specific mask cannot move it: usageFor is the unit's, byte 0 still the opcode.
    const ws = unit.table.get(0x93)!;
    unit.override({ ...ws, usageFor: () => ws.usage.map(() => 0) });
    expect(expectGood(await run(unit, rsoc(1, 0x93)))[4]).toBe(0x93);
  });

  it('option 1 for an opcode with service actions is INVALID FIELD IN CDB', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, rsoc(1, 0x9e)), 'INVALID_FIELD_IN_CDB', { byte: 2, bit: 2 });
  });

  it('option 2: opcode and service action; the service action sits in the usage data', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, rsoc(2, 0x9e, 0x10)));
    expect([d[1], be16(d, 2), d[4], d[5]]).toEqual([0x03, 16, 0x9e, 0x10]);
    const v = expectGood(await run(unit, rsoc(2, 0x7f, 0x09)));
    expect([be16(v, 2), v[4], v[4 + 7], be16(v, 4 + 8)]).toEqual([32, 0x7f, 0x18, 0x09]);
  });

  it('option 2 for an opcode without service actions is INVALID FIELD IN CDB', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, rsoc(2, 0x28)), 'INVALID_FIELD_IN_CDB', { byte: 2, bit: 2 });
  });

  it('option 3 answers either kind; unsupported commands get SUPPORT 001b', async () => {
    const { unit } = makeUnit();
    expect(expectGood(await run(unit, rsoc(3, 0x28)))[1]).toBe(0x03);
    expect(expectGood(await run(unit, rsoc(3, 0x9e, 0x10)))[1]).toBe(0x03);
    expect([...expectGood(await run(unit, rsoc(3, 0x28, 1)))]).toEqual([0, 0x01, 0, 0]);
    expect([...expectGood(await run(unit, rsoc(1, 0xc0)))]).toEqual([0, 0x01, 0, 0]);
    expect([...expectGood(await run(unit, rsoc(2, 0x9e, 0x1f)))]).toEqual([0, 0x01, 0, 0]);
  });

  it('one command with RCTD: CTDP and the timeouts after the usage data', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, rsoc(1, 0x00, 0, true)));
    expect(d[1]).toBe(0x83);
    expect(d.length).toBe(4 + 6 + 12);
    expect(be32(d, 10 + 4)).toBe(1);
    expect(be32(d, 10 + 8)).toBe(5);
  });

  it('reporting options 4-7 are INVALID FIELD IN CDB at byte 2 bit 2', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, rsoc(4)), 'INVALID_FIELD_IN_CDB', { byte: 2, bit: 2 });
  });

  it('a command added with override is reported too', async () => {
    const { unit } = makeUnit();
    unit.override({
      opcode: 0xc9,
      name: 'VENDOR',
      cdbLength: 6,
      direction: 'none',
      usage: [0xc9, 0x01, 0, 0, 0, 0],
      decode: () => ({}),
      handler: () => undefined,
    });
    const d = expectGood(await run(unit, rsoc(1, 0xc9)));
    expect([...d]).toEqual([0, 0x03, 0, 6, 0xc9, 0x01, 0, 0, 0, 0]);
  });

  describe('dispatch and the report agree per unit (OpcodeEntry.supported / usageFor)', () => {
    const listed = (d: Uint8Array): Set<string> => {
      const out = new Set<string>();
      for (let o = 4; o < d.length; o += 8) out.add(d[o + 5]! & 1 ? `${d[o]}/${be16(d, o + 2)}` : `${d[o]}`);
      return out;
    };
    // EXTENDED COPY(LID1), RECEIVE COPY RESULTS (COPY STATUS, OPERATING PARAMETERS), UNMAP,
    // SANITIZE (BLOCK ERASE), WRITE ATOMIC(16).
    const conditional = ['131/0', '132/0', '132/3', '66', '72/2', '156'];
    const atomic = { maxAtomicTransferBlocks: 8 };

    it('every listed command dispatches and every unlisted one is INVALID COMMAND OPERATION CODE', async () => {
      for (const options of [
        {},
        { memory: { thin: false } },
        { config: { extendedCopy: true } },
        { config: { ...atomic, maxCompareAndWriteBlocks: 0 } },
      ]) {
        const { unit } = makeUnit(options);
        const reported = listed(expectGood(await run(unit, rsoc(0))));
        for (const entry of unit.table.entries()) {
          const key =
            entry.serviceAction === undefined ? `${entry.opcode}` : `${entry.opcode}/${entry.serviceAction}`;
          // The opcode and service action in place (as the usage data has them), every other field zero.
          const cdb = usageData(entry, unit).fill(
            0,
            entry.opcode === 0x7f ? 10 : entry.serviceAction === undefined ? 1 : 2,
          );
          if (entry.opcode === 0x7f) cdb.fill(0, 1, 7);
          const result = await run(unit, cdb);
          const sense = result.sense === undefined ? undefined : decodeSense(result.sense);
          // Unoffered: INVALID COMMAND OPERATION CODE, or INVALID FIELD IN CDB at the service action
          // while a sibling service action is offered.
          const refused =
            sense !== undefined &&
            sense.key === 5 &&
            (sense.asc === 0x20 ||
              (entry.serviceAction !== undefined &&
                sense.asc === 0x24 &&
                sense.fieldPointer?.byte === 1 &&
                sense.fieldPointer.bit === 4));
          expect(refused, `${entry.name} dispatch vs report`).toBe(!reported.has(key));
        }
      }
    });

    it('EXTENDED COPY / RECEIVE COPY RESULTS are listed only when extendedCopy is on', async () => {
      const off = listed(expectGood(await run(makeUnit().unit, rsoc(0))));
      const on = listed(expectGood(await run(makeUnit({ config: { extendedCopy: true } }).unit, rsoc(0))));
      for (const key of ['131/0', '132/0', '132/3']) {
        expect(off.has(key), key).toBe(false);
        expect(on.has(key), key).toBe(true);
      }
      const { unit } = makeUnit();
      expect([...expectGood(await run(unit, rsoc(2, 0x83, 0)))]).toEqual([0, 0x01, 0, 0]);
      expect([...expectGood(await run(unit, rsoc(2, 0x84, 3)))]).toEqual([0, 0x01, 0, 0]);
      // With no service action of 84h offered, option 1 reports it unsupported rather than refusing.
      expect([...expectGood(await run(unit, rsoc(1, 0x84)))]).toEqual([0, 0x01, 0, 0]);
    });

    it('UNMAP is listed only with a discarding backend; WRITE SAME shows UNMAP only then', async () => {
      const thin = makeUnit().unit;
      const thick = makeUnit({ memory: { thin: false } }).unit;
      expect(listed(expectGood(await run(thin, rsoc(0)))).has('66')).toBe(true);
      expect(listed(expectGood(await run(thick, rsoc(0)))).has('66')).toBe(false);
      expect([...expectGood(await run(thick, rsoc(1, 0x42)))]).toEqual([0, 0x01, 0, 0]);
      for (const [opcode, sa, flagsAt] of [
        [0x41, 0, 4 + 1],
        [0x93, 0, 4 + 1],
        [0x7f, 0x0d, 4 + 10],
      ] as const) {
        const option = opcode === 0x7f ? 2 : 1;
        const withBit = expectGood(await run(thin, rsoc(option, opcode, sa)));
        const without = expectGood(await run(thick, rsoc(option, opcode, sa)));
        expect(withBit[flagsAt]! & 0x08, `${opcode}`).toBe(0x08);
        expect(without[flagsAt]! & 0x08, `${opcode}`).toBe(0);
      }
    });

    it('WRITE ATOMIC(16) is listed only with an atomic length, COMPARE AND WRITE only with a length', async () => {
      expect(listed(expectGood(await run(makeUnit().unit, rsoc(0)))).has('156')).toBe(false);
      const atomicUnit = makeUnit({ config: atomic }).unit;
      expect(listed(expectGood(await run(atomicUnit, rsoc(0)))).has('156')).toBe(true);
      const boundaryOnly = { maxAtomicTransferBlocksWithBoundary: 8, maxAtomicBoundaryBlocks: 4 };
      expect(listed(expectGood(await run(makeUnit({ config: boundaryOnly }).unit, rsoc(0)))).has('156')).toBe(
        true,
      );
      const noCaw = makeUnit({ config: { maxCompareAndWriteBlocks: 0 } }).unit;
      expect(listed(expectGood(await run(noCaw, rsoc(0)))).has('137')).toBe(false);
      expect([...expectGood(await run(noCaw, rsoc(1, 0x89)))]).toEqual([0, 0x01, 0, 0]);
    });

    it('the non-conditional commands are listed on every unit', async () => {
      const { unit } = makeUnit({ memory: { thin: false } });
      const reported = listed(expectGood(await run(unit, rsoc(0))));
      for (const entry of unit.table.entries()) {
        const key =
          entry.serviceAction === undefined ? `${entry.opcode}` : `${entry.opcode}/${entry.serviceAction}`;
        expect(reported.has(key), entry.name).toBe(!conditional.includes(key));
      }
    });
  });
});
