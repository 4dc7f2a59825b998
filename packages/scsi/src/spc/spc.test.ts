import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { be16, be32 } from '../core/bytes.js';
import { LogicalUnit, naaFromSerial } from '../core/unit.js';
import { decodeSense } from '../sense/sense.js';
import { expectCheck, expectGood, makeUnit, run } from '../testing/harness.js';
import { encodeLun } from './report-luns.js';

const inquiry = (evpd: number, page: number, alloc = 0xffff) => [
  0x12,
  evpd,
  page,
  alloc >> 8,
  alloc & 0xff,
  0,
];
const ascii = (b: Uint8Array) => String.fromCharCode(...b);

describe('INQUIRY standard data (SPC-5 6.7.2)', () => {
  it('96 bytes: disk, VERSION 06h (SPC-4, as LIO), HiSup, format 2, additional length 91, CmdQue, identification, version descriptors', async () => {
    const { unit } = makeUnit({ config: { vendor: 'ACME', product: 'Disk', revision: '1.2' } });
    const d = expectGood(await run(unit, inquiry(0, 0)));
    expect(d.length).toBe(96);
    expect([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]).toEqual([0, 0, 0x06, 0x12, 91, 0, 0, 0x02]);
    expect(ascii(d.subarray(8, 16))).toBe('ACME    ');
    expect(ascii(d.subarray(16, 32))).toBe('Disk            ');
    expect(ascii(d.subarray(32, 36))).toBe('1.2 ');
    // SAM-5, SPC-4, SBC-4 ("no version claimed"); no transport when none is configured.
    expect([be16(d, 58), be16(d, 60), be16(d, 62), be16(d, 64)]).toEqual([0x00a0, 0x0460, 0x0600, 0]);
    expect(d.subarray(66).every((b) => b === 0)).toBe(true);
  });

  it('the configured transport is claimed after the command sets (SPC-5 Table 148 codes)', async () => {
    const vectors = [
      ['iscsi', 0x0960],
      ['sas', 0x0c60],
      ['fcp', 0x0a40],
      ['srp', 0x0940],
      ['sbp', 0x0980],
    ] as const;
    for (const [transportProtocol, code] of vectors) {
      const d = expectGood(await run(makeUnit({ config: { transportProtocol } }).unit, inquiry(0, 0)));
      expect([be16(d, 58), be16(d, 60), be16(d, 62), be16(d, 64), be16(d, 66)], transportProtocol).toEqual([
        0x00a0,
        0x0460,
        0x0600,
        code,
        0,
      ]);
    }
  });

  it('3PC is set when extended copy is on', async () => {
    const { unit } = makeUnit({ config: { extendedCopy: true } });
    expect(expectGood(await run(unit, inquiry(0, 0)))[5]).toBe(0x08);
  });

  it('go-tcmu regression: allocation length below 36 returns that many bytes, GOOD', async () => {
    const { unit } = makeUnit();
    for (const alloc of [1, 4, 5, 35]) {
      const d = expectGood(await run(unit, inquiry(0, 0, alloc), { dataInLength: alloc }));
      expect(d.length).toBe(alloc);
    }
  });

  it('EVPD=0 with a page code is INVALID FIELD IN CDB at byte 2', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, inquiry(0, 0x80)), 'INVALID_FIELD_IN_CDB', { byte: 2 });
  });

  it('CMDDT (obsolete, byte 1 bit 1) is INVALID FIELD IN CDB', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, inquiry(2, 0)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 1 });
  });
});

describe('INQUIRY VPD pages', () => {
  it('0x00 lists every page it answers, in ascending order', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, inquiry(1, 0)));
    expect([...d]).toEqual([0, 0, 0, 7, 0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2]);
    for (const code of d.subarray(4)) expect(expectGood(await run(unit, inquiry(1, code)))[1]).toBe(code);
  });

  it('unknown VPD page is INVALID FIELD IN CDB at byte 2', async () => {
    const { unit } = makeUnit();
    for (const code of [0x01, 0x89, 0xb3, 0xff]) {
      expectCheck(await run(unit, inquiry(1, code)), 'INVALID_FIELD_IN_CDB', { byte: 2 });
    }
  });

  it('0x80 unit serial number', async () => {
    const { unit } = makeUnit({ config: { serial: 'abc123' } });
    const d = expectGood(await run(unit, inquiry(1, 0x80)));
    expect([...d.subarray(0, 4)]).toEqual([0, 0x80, 0, 6]);
    expect(ascii(d.subarray(4))).toBe('abc123');
  });

  it('0x83: NAA 6 designator unique per unit and T10 vendor id', async () => {
    const a = makeUnit().unit;
    const b = makeUnit().unit;
    const da = expectGood(await run(a, inquiry(1, 0x83)));
    const db = expectGood(await run(b, inquiry(1, 0x83)));
    expect(be16(da, 2)).toBe(da.length - 4);
    // NAA designator: code set binary, LU association, type 3, 16 bytes, NAA 6.
    expect([...da.subarray(4, 8)]).toEqual([0x01, 0x03, 0x00, 16]);
    expect(da[8]! >> 4).toBe(6);
    expect(Buffer.from(da.subarray(8, 24))).not.toEqual(Buffer.from(db.subarray(8, 24)));
    // T10 vendor id: ASCII, type 1, vendor then serial.
    expect([da[24], da[25]]).toEqual([0x02, 0x01]);
    expect(ascii(da.subarray(28, 28 + da[27]!))).toBe(`TCMU    ${a.config.serial}`);
  });

  it('0x83: a configured NAA 5 designator is reported as given; malformed ones are refused at creation', async () => {
    const naa = Uint8Array.of(0x50, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12);
    const d = expectGood(await run(makeUnit({ config: { naa } }).unit, inquiry(1, 0x83)));
    expect([...d.subarray(4, 16)]).toEqual([0x01, 0x03, 0x00, 8, ...naa]);
    expect(() => makeUnit({ config: { naa: new Uint8Array(16) } })).toThrow(RangeError);
    expect(() => makeUnit({ config: { naa: naa.subarray(0, 7) } })).toThrow(/NAA 5 in 7 bytes/);
    expect(() => makeUnit({ config: { naa: Uint8Array.of(0x60, ...naa.subarray(1)) } })).toThrow(RangeError);
  });

  it('0x83: units with distinct serials get distinct NAA designators', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) seen.add(Buffer.from(naaFromSerial(`serial-${i}`)).toString('hex'));
    expect(seen.size).toBe(2000);
  });

  it('0x83: relative target port and SCSI name string when configured', async () => {
    const { unit } = makeUnit({
      config: { serial: 's', targetPort: { relativePortId: 3, name: 'naa.5001405abc' } },
    });
    const d = expectGood(await run(unit, inquiry(1, 0x83)));
    let o = 4;
    const types: number[] = [];
    while (o < d.length) {
      types.push(d[o + 1]!);
      if ((d[o + 1]! & 0x0f) === 4) expect(be16(d, o + 6)).toBe(3);
      if ((d[o + 1]! & 0x0f) === 8) {
        const len = d[o + 3]!;
        expect(len % 4).toBe(0);
        expect(ascii(d.subarray(o + 4, o + 4 + 14))).toBe('naa.5001405abc');
        expect(d[o + 4 + 14]).toBe(0);
      }
      o += 4 + d[o + 3]!;
    }
    expect(o).toBe(d.length);
    expect(types).toEqual([0x03, 0x01, 0x14, 0x18]);
  });

  it('0x86 extended INQUIRY: 64 bytes, simple/ordered/head of queue, V_SUP', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, inquiry(1, 0x86)));
    expect([d.length, be16(d, 2), d[5], d[6]]).toEqual([64, 0x3c, 0x07, 0x01]);
  });

  it('0xB0 block limits from the configuration; unmap limits only when the backend can discard', async () => {
    const config = {
      maxTransferBlocks: 1024,
      optimalTransferBlocks: 64,
      maxUnmapBlocks: 4096,
      maxUnmapDescriptors: 32,
    };
    const thin = expectGood(await run(makeUnit({ config }).unit, inquiry(1, 0xb0)));
    expect([thin.length, thin[4], thin[5], be16(thin, 6)]).toEqual([64, 0x01, 16, 1]);
    expect([
      be32(thin, 8),
      be32(thin, 12),
      be32(thin, 16),
      be32(thin, 20),
      be32(thin, 24),
      be32(thin, 28),
    ]).toEqual([1024, 64, 1024, 4096, 32, 1]); // MAXIMUM PREFETCH LENGTH follows the maximum transfer
    expect(thin[32]).toBe(0x80); // UGAVALID
    expect(be32(thin, 40)).toBe((64 << 20) / 512); // MAXIMUM WRITE SAME LENGTH (low 32 bits)
    const thick = expectGood(await run(makeUnit({ config, memory: { thin: false } }).unit, inquiry(1, 0xb0)));
    expect([be32(thick, 20), be32(thick, 24), thick[32]]).toEqual([0, 0, 0]);
    // No atomic writes configured: WRITE ATOMIC is not offered and bytes 44-63 are zero.
    expect(thin.subarray(44).every((b) => b === 0)).toBe(true);
  });

  it('0xB0 defaults stay inside what Linux sd uses: 1 Mi blocks per UNMAP, optimal ≤ maximum transfer', async () => {
    const d = expectGood(await run(makeUnit().unit, inquiry(1, 0xb0)));
    expect(be32(d, 20)).toBe(0x10_0000);
    expect(be32(d, 12)).toBeLessThanOrEqual(be32(d, 8));
    expect(be32(d, 12)).toBeLessThanOrEqual(0xffff); // sd ignores a larger OPTIMAL TRANSFER LENGTH
    expect(d[5]).toBeLessThanOrEqual(be32(d, 8));
    // A small maximum transfer pulls the limits that may not exceed it down with it.
    const small = expectGood(
      await run(makeUnit({ config: { maxTransferBlocks: 8 } }).unit, inquiry(1, 0xb0)),
    );
    expect([small[5], be32(small, 8), be32(small, 12), be32(small, 16)]).toEqual([8, 8, 8, 8]);
  });

  it('0xB0 atomic fields are what WRITE ATOMIC enforces', async () => {
    const config = {
      maxAtomicTransferBlocks: 64,
      atomicAlignment: 8,
      atomicTransferLengthGranularity: 4,
      maxAtomicTransferBlocksWithBoundary: 32,
      maxAtomicBoundaryBlocks: 16,
    };
    const d = expectGood(await run(makeUnit({ config }).unit, inquiry(1, 0xb0)));
    expect([be32(d, 44), be32(d, 48), be32(d, 52), be32(d, 56), be32(d, 60)]).toEqual([64, 8, 4, 32, 16]);
  });

  it('limits outside their Block Limits field, or contradicting each other, are refused at creation', () => {
    const refused: Array<[string, Record<string, number>, RegExp]> = [
      ['compare and write over a byte', { maxCompareAndWriteBlocks: 256 }, /0\.\.255/],
      [
        'compare and write over the maximum transfer',
        { maxTransferBlocks: 8, maxCompareAndWriteBlocks: 9 },
        /exceeds/,
      ],
      ['optimal over the maximum transfer', { maxTransferBlocks: 8, optimalTransferBlocks: 16 }, /exceeds/],
      ['prefetch over the maximum transfer', { maxTransferBlocks: 8, maxPrefetchBlocks: 9 }, /exceeds/],
      ['atomic over the maximum transfer', { maxTransferBlocks: 8, maxAtomicTransferBlocks: 16 }, /exceeds/],
      ['UNMAP count over 32 bits', { maxUnmapBlocks: 2 ** 32 }, /maxUnmapBlocks/],
      ['no UNMAP descriptor', { maxUnmapDescriptors: 0 }, /maxUnmapDescriptors/],
      ['a fraction', { maxPrefetchBlocks: 1.5 }, /integer/],
      ['a boundary size without its length', { maxAtomicBoundaryBlocks: 4 }, /both/],
      [
        'a boundary larger than its length',
        { maxAtomicBoundaryBlocks: 8, maxAtomicTransferBlocksWithBoundary: 4 },
        /exceeds maxAtomicTransferBlocksWithBoundary/,
      ],
      [
        'an atomic length off its granularity',
        { maxAtomicTransferBlocks: 6, atomicTransferLengthGranularity: 4 },
        /multiple/,
      ],
    ];
    for (const [what, config, message] of refused) {
      expect(() => makeUnit({ config }), what).toThrow(message);
    }
  });

  it('0xB1 rotation rate, form factor, WABEREQ 01b with SANITIZE BLOCK ERASE and WACEREQ 00b', async () => {
    const { unit } = makeUnit({ config: { rotationRate: 7200, formFactor: 2 } });
    const d = expectGood(await run(unit, inquiry(1, 0xb1)));
    expect([d.length, be16(d, 4), d[7]]).toEqual([64, 7200, 0x40 | 2]);
    // Without deallocation there is no BLOCK ERASE, so no WABEREQ either.
    const thick = makeUnit({ config: { formFactor: 2 }, memory: { thin: false } }).unit;
    expect(expectGood(await run(thick, inquiry(1, 0xb1)))[7]).toBe(2);
  });

  it('0xB2 provisioning: thin with LBPU/LBPWS/LBPWS10/LBPRZ, or fully provisioned', async () => {
    const thin = expectGood(await run(makeUnit().unit, inquiry(1, 0xb2)));
    // THRESHOLD EXPONENT 1: the Logical Block Provisioning log page is offered (see log.test.ts).
    expect([...thin]).toEqual([0, 0xb2, 0, 4, 1, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0]);
    const thick = expectGood(await run(makeUnit({ memory: { thin: false } }).unit, inquiry(1, 0xb2)));
    expect([...thick]).toEqual([0, 0xb2, 0, 4, 0, 0, 0, 0]);
  });
});

describe('VPD pages follow the commands the unit offers (OpcodeEntry.supported)', () => {
  const readCapacity16 = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];

  it('UNMAP withdrawn by its predicate: LBPU=0, no unmap limits, LBPWS kept, INVALID COMMAND OPERATION CODE', async () => {
    const { unit } = makeUnit();
    unit.override({ ...unit.table.get(0x42)!, supported: () => false });
    const b2 = expectGood(await run(unit, inquiry(1, 0xb2)));
    expect(b2[5]).toBe(0x40 | 0x20 | 0x04); // LBPWS, LBPWS10, LBPRZ: WRITE SAME still deallocates
    expect(b2[6]).toBe(0x02);
    const b0 = expectGood(await run(unit, inquiry(1, 0xb0)));
    expect([be32(b0, 20), be32(b0, 24), b0[32]]).toEqual([0, 0, 0]);
    expectCheck(await run(unit, [0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 'INVALID_COMMAND_OPERATION_CODE');
  });

  it('no discard: LBPME=0 in READ CAPACITY(16) and fully provisioned in VPD B2h', async () => {
    const { unit } = makeUnit({ memory: { thin: false } });
    expect(expectGood(await run(unit, readCapacity16))[14]! & 0xc0).toBe(0);
    expect([...expectGood(await run(unit, inquiry(1, 0xb2)))]).toEqual([0, 0xb2, 0, 4, 0, 0, 0, 0]);
  });

  it('a read-only thin unit still reports thin provisioning; UNMAP answers WRITE PROTECTED', async () => {
    const { unit } = makeUnit({ readOnly: true });
    expect(expectGood(await run(unit, readCapacity16))[14]! & 0xc0).toBe(0xc0);
    expect(expectGood(await run(unit, inquiry(1, 0xb2)))[5]! & 0x80).toBe(0x80);
    expectCheck(await run(unit, [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]), 'WRITE_PROTECTED');
  });

  it('3PC follows EXTENDED COPY: off by default, and off when the entry is withdrawn', async () => {
    expect(expectGood(await run(makeUnit().unit, inquiry(0, 0)))[5]).toBe(0);
    const { unit } = makeUnit({ config: { extendedCopy: true } });
    unit.override({ ...unit.table.get(0x83, 0)!, supported: () => false });
    expect(expectGood(await run(unit, inquiry(0, 0)))[5]).toBe(0);
  });

  it('COMPARE AND WRITE withdrawn: MAXIMUM COMPARE AND WRITE LENGTH 0', async () => {
    const { unit } = makeUnit();
    expect(expectGood(await run(unit, inquiry(1, 0xb0)))[5]).toBe(16);
    unit.override({ ...unit.table.get(0x89)!, supported: () => false });
    expect(expectGood(await run(unit, inquiry(1, 0xb0)))[5]).toBe(0);
  });
});

describe('TEST UNIT READY', () => {
  it('GOOD with no data on a ready unit', async () => {
    const { unit } = makeUnit();
    expect(await run(unit, [0, 0, 0, 0, 0, 0])).toEqual({ status: 0, residual: 0, direction: 'none' });
  });

  it('NOT READY / INITIALIZING COMMAND REQUIRED while stopped', async () => {
    const { unit } = makeUnit();
    unit.stopped = true;
    expectCheck(await run(unit, [0, 0, 0, 0, 0, 0]), 'NOT_READY_INITIALIZING_COMMAND_REQUIRED');
  });
});

describe('REQUEST SENSE (SPC-5 6.39)', () => {
  it('NO SENSE in fixed format when nothing is pending; 18 bytes', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, [0x03, 0, 0, 0, 252, 0]));
    expect(d.length).toBe(18);
    expect(decodeSense(d)).toEqual({ format: 'fixed', key: 0, asc: 0, ascq: 0 });
  });

  it('DESC=1 selects descriptor format', async () => {
    const { unit } = makeUnit();
    const d = expectGood(await run(unit, [0x03, 1, 0, 0, 252, 0]));
    expect([...d]).toEqual([0x72, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('reports the stopped state', async () => {
    const { unit } = makeUnit();
    unit.stopped = true;
    expect(decodeSense(expectGood(await run(unit, [0x03, 0, 0, 0, 252, 0])))).toMatchObject({
      key: 2,
      asc: 4,
      ascq: 2,
    });
  });

  it('the allocation length truncates the sense data', async () => {
    const { unit } = makeUnit();
    expect(expectGood(await run(unit, [0x03, 0, 0, 0, 8, 0])).length).toBe(8);
  });
});

describe('REPORT LUNS (SPC-5 6.33)', () => {
  const reportLuns = (select: number, alloc = 4096) => [
    0xa0,
    0,
    select,
    0,
    0,
    0,
    alloc >>> 24,
    (alloc >> 16) & 0xff,
    (alloc >> 8) & 0xff,
    alloc & 0xff,
    0,
    0,
  ];

  it('lists the configured LUNs (peripheral addressing below 256, flat above)', async () => {
    const { unit } = makeUnit({ luns: [0, 5, 300] });
    const d = expectGood(await run(unit, reportLuns(0)));
    expect(be32(d, 0)).toBe(24);
    expect([...d.subarray(8, 16)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...d.subarray(16, 18)]).toEqual([0, 5]);
    expect([...d.subarray(24, 26)]).toEqual([0x41, 0x2c]);
    expect([...encodeLun(300).subarray(0, 2)]).toEqual([0x41, 0x2c]);
  });

  it('SELECT REPORT 1 (well known) and 10h (administrative) are empty; 2 lists all', async () => {
    const { unit } = makeUnit();
    expect([...expectGood(await run(unit, reportLuns(1)))]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(be32(expectGood(await run(unit, reportLuns(0x10))), 0)).toBe(0);
    expect(be32(expectGood(await run(unit, reportLuns(2))), 0)).toBe(8);
    expect(be32(expectGood(await run(unit, reportLuns(0x11))), 0)).toBe(8);
  });

  it('a reserved SELECT REPORT is INVALID FIELD IN CDB at byte 2', async () => {
    const { unit } = makeUnit();
    for (const select of [3, 0x0f, 0x13, 0xff]) {
      expectCheck(await run(unit, reportLuns(select)), 'INVALID_FIELD_IN_CDB', { byte: 2 });
    }
  });

  it('the LUN LIST LENGTH is kept when the allocation length truncates', async () => {
    const { unit } = makeUnit({ luns: [0, 1, 2] });
    const d = expectGood(await run(unit, reportLuns(0, 16)));
    expect([d.length, be32(d, 0)]).toEqual([16, 24]);
  });

  it('rejects LUNs outside the flat space', () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 8 });
    expect(() => new LogicalUnit({ backend, luns: [16384] })).toThrow(RangeError);
    expect(() => new LogicalUnit({ backend, luns: [1.5] })).toThrow(RangeError);
  });
});

describe('REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-5 6.36)', () => {
  it('4 bytes; REPD=1 gives 16 bytes with additional length 0Ch', async () => {
    const { unit } = makeUnit();
    const short = expectGood(await run(unit, [0xa3, 0x0d, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]));
    expect([...short]).toEqual([0xdc, 0x01, 0, 0]);
    const long = expectGood(await run(unit, [0xa3, 0x0d, 0x80, 0, 0, 0, 0, 0, 1, 0, 0, 0]));
    expect(long.length).toBe(16);
    expect(long[3]).toBe(0x0c);
  });
});
