import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { BackendWrapper } from '../backends/wrapper.js';
import type { BlockBackend, ProvisioningUsage } from '../core/backend.js';
import { be16, be32, putBe16 } from '../core/bytes.js';
import { expectCheck, expectGood, makeUnit, run } from '../testing/harness.js';
import { logCommands, supportedLogPages } from './log.js';

const logSense = (
  page: number,
  subpage = 0,
  options: { pc?: number; pointer?: number; alloc?: number } = {},
) => {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x4d;
  cdb[2] = ((options.pc ?? 1) << 6) | page;
  cdb[3] = subpage;
  putBe16(cdb, 5, options.pointer ?? 0);
  putBe16(cdb, 7, options.alloc ?? 1024);
  return cdb;
};
const logSelect = (flags: number, page: number, subpage: number, length: number, pc = 1) => {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x4c;
  cdb[1] = flags;
  cdb[2] = (pc << 6) | page;
  cdb[3] = subpage;
  putBe16(cdb, 7, length);
  return cdb;
};
const PCR = 0x02;
const vpdB2 = [0x12, 0x01, 0xb2, 0, 64, 0];

/** A thin backend reporting the usage the test gives it. */
const reporting = (usage: () => ProvisioningUsage | Promise<ProvisioningUsage>, blockCount = 2048) =>
  new (class extends BackendWrapper {
    protected override provisioningUsageInner() {
      return usage();
    }
  })(new MemoryBackend({ blockSize: 512, blockCount }));

/** Parameter code → [control byte, value bytes] of a parameter page. */
const parametersOf = (page: Uint8Array): Map<number, number[]> => {
  const out = new Map<number, number[]>();
  for (let at = 4; at < 4 + be16(page, 2); at += 4 + page[at + 3]!) {
    out.set(be16(page, at), [page[at + 2]!, ...page.subarray(at + 4, at + 4 + page[at + 3]!)]);
  }
  return out;
};

describe('LOG SENSE supported pages (SPC-5 Supported Log Pages, Supported Log Pages and Subpages)', () => {
  it('00h lists the pages with subpage 00h; 0Ch only where the provisioning page is offered', async () => {
    const thin = expectGood(await run(makeUnit().unit, logSense(0x00)));
    expect([...thin]).toEqual([0x00, 0x00, 0x00, 3, 0x00, 0x0c, 0x2f]);
    const thick = expectGood(await run(makeUnit({ memory: { thin: false } }).unit, logSense(0x00)));
    expect([...thick]).toEqual([0x00, 0x00, 0x00, 2, 0x00, 0x2f]);
  });

  it('00h/FFh lists every page and subpage pair, SPF=1', async () => {
    const d = expectGood(await run(makeUnit().unit, logSense(0x00, 0xff)));
    expect([...d]).toEqual([0x40, 0xff, 0x00, 8, 0x00, 0x00, 0x00, 0xff, 0x0c, 0x00, 0x2f, 0x00]);
  });

  it('every page listed answers, and supportedLogPages() names them all', async () => {
    const { unit } = makeUnit();
    const pairs = expectGood(await run(unit, logSense(0x00, 0xff)));
    for (let at = 4; at < pairs.length; at += 2) {
      const page = expectGood(await run(unit, logSense(pairs[at]!, pairs[at + 1]!)));
      expect([page[0]! & 0x3f, page[1]]).toEqual([pairs[at], pairs[at + 1]]);
    }
    expect(supportedLogPages().map((p) => [p.code, p.subpage])).toEqual([
      [0x00, 0x00],
      [0x00, 0xff],
      [0x0c, 0x00],
      [0x2f, 0x00],
    ]);
  });
});

describe('LOG SENSE Logical Block Provisioning (SBC-4 6.4.5)', () => {
  it('available and used LBA mapping resources in threshold sets, dedicated, DS=1, binary list parameters', async () => {
    const { unit } = makeUnit({ memory: { chunkBlocks: 8 } });
    const empty = expectGood(await run(unit, logSense(0x0c)));
    expect([...empty.subarray(0, 4)]).toEqual([0x80 | 0x0c, 0x00, 0x00, 24]);
    // THRESHOLD EXPONENT 1 for 2048 blocks: sets of 2 blocks.
    expect(expectGood(await run(unit, vpdB2))[4]).toBe(1);
    expect(parametersOf(empty)).toEqual(
      new Map([
        [0x0001, [0x23, 0, 0, 0x04, 0x00, 0x01, 0, 0, 0]],
        [0x0002, [0x23, 0, 0, 0, 0, 0x01, 0, 0, 0]],
      ]),
    );
    // One block written maps its 8-block chunk: 4 sets used, (2048 - 8) / 2 available.
    const write10 = [0x2a, 0, 0, 0, 0, 9, 0, 0, 1, 0];
    expectGood(await run(unit, write10, { dataOut: new Uint8Array(512).fill(1) }));
    const used = parametersOf(expectGood(await run(unit, logSense(0x0c))));
    expect(be32(Uint8Array.from(used.get(0x0001)!), 1)).toBe(1020);
    expect(be32(Uint8Array.from(used.get(0x0002)!), 1)).toBe(4);
  });

  it.each([
    [2 ** 32, 1],
    [2 ** 33 - 1, 1],
    [2 ** 33, 2],
    [2 ** 40, 9],
  ])('%i blocks: THRESHOLD EXPONENT %i, the smallest with capacity / 2^e < 2^32 (SBC-4 6.6.7)', async (blocks, e) => {
    const { unit } = makeUnit({ backend: new MemoryBackend({ blockSize: 512, blockCount: blocks }) });
    expect(expectGood(await run(unit, vpdB2))[4]).toBe(e);
    const available = parametersOf(expectGood(await run(unit, logSense(0x0c)))).get(0x0001)!;
    expect(be32(Uint8Array.from(available), 1)).toBe(Math.floor(blocks / 2 ** e));
  });

  it('a filesystem-backed count is shared (SCOPE 10b); no available count, only the used one; values clamped', async () => {
    const shared = makeUnit({
      backend: reporting(() => ({ mappedBlocks: 3, availableBlocks: 2 ** 40, availableShared: true })),
    });
    const p = parametersOf(expectGood(await run(shared.unit, logSense(0x0c))));
    expect(p.get(0x0001)).toEqual([0x23, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0]);
    expect(p.get(0x0002)).toEqual([0x23, 0, 0, 0, 2, 0x01, 0, 0, 0]); // 3 blocks round up to 2 sets
    const usedOnly = makeUnit({ backend: reporting(() => Promise.resolve({ mappedBlocks: 1 << 20 })) });
    const page = expectGood(await run(usedOnly.unit, logSense(0x0c)));
    expect(be16(page, 2)).toBe(12);
    expect(parametersOf(page).get(0x0002)).toEqual([0x23, 0, 0, 0x04, 0x00, 0x01, 0, 0, 0]); // capacity: 1024 sets
  });

  it('not offered without a usage report, or on a fully provisioned unit: INVALID FIELD IN CDB, THRESHOLD EXPONENT 0', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const silent: BlockBackend = {
      blockSize: 512,
      blockCount: 64,
      unmappedReadsZero: true,
      read: (lba, into) => inner.read(lba, into),
      write: (lba, data, options) => inner.write(lba, data, options),
      flush: () => {},
      discard: (lba, blocks) => inner.discard!(lba, blocks),
    };
    for (const unit of [makeUnit({ backend: silent }).unit, makeUnit({ memory: { thin: false } }).unit]) {
      expectCheck(await run(unit, logSense(0x0c)), 'INVALID_FIELD_IN_CDB', { byte: 2, bit: 5 });
      expect(expectGood(await run(unit, vpdB2))[4]).toBe(0);
    }
  });

  it('a failing usage report is HARDWARE ERROR / INTERNAL TARGET FAILURE, logged', async () => {
    const errors: unknown[] = [];
    const backend = reporting(() => {
      throw new Error('statfs failed');
    });
    const { unit } = makeUnit({ backend, logger: { debug() {}, warn() {}, error: (o) => errors.push(o) } });
    expectCheck(await run(unit, logSense(0x0c)), 'INTERNAL_TARGET_FAILURE');
    expect(errors.length).toBe(1);
  });
});

describe('LOG SENSE Informational Exceptions (SPC-5)', () => {
  it('the general parameter: no exception (ASC/ASCQ 00h), no temperature reading (FFh)', async () => {
    const d = expectGood(await run(makeUnit().unit, logSense(0x2f)));
    expect([...d]).toEqual([0x80 | 0x2f, 0x00, 0x00, 7, 0x00, 0x00, 0x23, 3, 0x00, 0x00, 0xff]);
  });
});

describe('LOG SENSE CDB (SPC-5 6.8)', () => {
  it.each([0, 1, 2, 3])('PC %i returns the same list parameters (PC is ignored for them)', async (pc) => {
    const { unit } = makeUnit();
    const reference = expectGood(await run(unit, logSense(0x0c)));
    expect([...expectGood(await run(unit, logSense(0x0c, 0, { pc })))]).toEqual([...reference]);
  });

  it('PARAMETER POINTER: from that code or the next one up; above the largest is INVALID FIELD IN CDB at byte 5', async () => {
    const { unit } = makeUnit();
    const from2 = expectGood(await run(unit, logSense(0x0c, 0, { pointer: 2 })));
    expect([be16(from2, 2), be16(from2, 4)]).toEqual([12, 0x0002]);
    expect(be16(expectGood(await run(unit, logSense(0x0c, 0, { pointer: 1 }))), 2)).toBe(24);
    expectCheck(await run(unit, logSense(0x0c, 0, { pointer: 3 })), 'INVALID_FIELD_IN_CDB', { byte: 5 });
    expectCheck(await run(unit, logSense(0x2f, 0, { pointer: 1 })), 'INVALID_FIELD_IN_CDB', { byte: 5 });
    // The supported pages pages hold no parameters at all.
    expectCheck(await run(unit, logSense(0x00, 0, { pointer: 1 })), 'INVALID_FIELD_IN_CDB', { byte: 5 });
  });

  it('ALLOCATION LENGTH truncates without changing PAGE LENGTH; 0 returns nothing', async () => {
    const { unit } = makeUnit();
    const head = expectGood(await run(unit, logSense(0x0c, 0, { alloc: 6 })));
    expect([...head]).toEqual([0x8c, 0x00, 0x00, 24, 0x00, 0x01]);
    const none = await run(unit, logSense(0x0c, 0, { alloc: 0 }), { dataInLength: 64 });
    expect([none.status, none.dataIn, none.residual]).toEqual([0, undefined, 64]);
  });

  it.each([
    ['SP (saving is not implemented)', 1, 0x01, 0],
    ['the obsolete PPC bit', 1, 0x02, 1],
    ['reserved byte 4', 4, 0x80, 7],
  ])('%s is INVALID FIELD IN CDB at that bit', async (_name, byte, value, bit) => {
    const cdb = logSense(0x2f);
    cdb[byte] = value;
    expectCheck(await run(makeUnit().unit, cdb), 'INVALID_FIELD_IN_CDB', { byte, bit });
  });

  it.each([
    ['an unimplemented page', 0x01, 0x00, 2, 5],
    ['a vendor specific page', 0x30, 0x00, 2, 5],
    ['a subpage of an implemented page', 0x2f, 0x01, 3, undefined],
    ['the Supported Subpages page of a page (not implemented)', 0x0c, 0xff, 3, undefined],
  ])('%s is INVALID FIELD IN CDB', async (_name, page, subpage, byte, bit) => {
    expectCheck(await run(makeUnit().unit, logSense(page, subpage)), 'INVALID_FIELD_IN_CDB', { byte, bit });
  });
});

describe('LOG SELECT (SPC-5 6.7)', () => {
  it.each([
    ['PCR=1: every page (nothing here is resettable)', PCR, 0x00, 0x00, 1],
    ['PCR=0, PC 01b: no change', 0, 0x00, 0x00, 1],
    ['PC 11b on one page: default cumulative values, none here', 0, 0x2f, 0x00, 3],
    ['every subpage of page 0Ch', PCR, 0x0c, 0xff, 1],
  ])('with no parameter list, %s: GOOD', async (_name, flags, page, subpage, pc) => {
    const { unit } = makeUnit();
    const before = expectGood(await run(unit, logSense(0x0c)));
    expectGood(await run(unit, logSelect(flags, page, subpage, 0, pc)));
    expect([...expectGood(await run(unit, logSense(0x0c)))]).toEqual([...before]);
  });

  it.each([
    ['SP=1 (saving is not implemented)', logSelect(0x01, 0, 0, 0), 1, 0],
    ['PCR=1 with a parameter list', logSelect(PCR, 0, 0, 4), 1, 1],
    ['an unimplemented page', logSelect(PCR, 0x01, 0x00, 0), 2, 5],
    ['the subpages of an unimplemented page', logSelect(PCR, 0x01, 0xff, 0), 2, 5],
    ['an unimplemented subpage', logSelect(PCR, 0x2f, 0x05, 0), 3, undefined],
    ['a page code beside a parameter list', logSelect(0, 0x2f, 0x00, 4), 2, 5],
    ['a subpage code beside a parameter list', logSelect(0, 0x00, 0x01, 4), 3, undefined],
  ])('%s is INVALID FIELD IN CDB', async (_name, cdb, byte, bit) => {
    expectCheck(await run(makeUnit().unit, cdb, { dataOut: new Uint8Array(4) }), 'INVALID_FIELD_IN_CDB', {
      byte,
      bit,
    });
  });

  it.each([
    ['a page header cut short', [0x2f, 0x00, 0x00], 'PARAMETER_LIST_LENGTH_ERROR', undefined, undefined],
    [
      'a page running past the list',
      [0x2f, 0x00, 0x00, 0x08, 0, 0],
      'PARAMETER_LIST_LENGTH_ERROR',
      undefined,
      undefined,
    ],
    ['an unimplemented page', [0x01, 0x00, 0x00, 0x00], 'INVALID_FIELD_IN_PARAMETER_LIST', 0, 5],
    ['pages out of order', [0x2f, 0, 0, 0, 0x0c, 0, 0, 0], 'INVALID_FIELD_IN_PARAMETER_LIST', 4, 5],
    ['a subpage without SPF', [0x00, 0xff, 0x00, 0x00], 'INVALID_FIELD_IN_PARAMETER_LIST', 0, 6],
    [
      'a parameter (none is changeable)',
      [0x2f, 0, 0, 7, 0, 0, 0x03, 3, 0, 0, 0],
      'INVALID_FIELD_IN_PARAMETER_LIST',
      4,
      undefined,
    ],
  ] as const)('a parameter list with %s is refused', async (_name, list, reason, byte, bit) => {
    const data = Uint8Array.from(list);
    expectCheck(
      await run(makeUnit().unit, logSelect(0, 0, 0, data.length), { dataOut: data }),
      reason,
      byte === undefined ? {} : { inCdb: false, byte, bit },
    );
  });

  it('a parameter list of pages without parameters, in order, is GOOD', async () => {
    const data = Uint8Array.of(0x40, 0xff, 0, 0, 0x0c, 0, 0, 0, 0x2f, 0, 0, 0);
    expectGood(await run(makeUnit().unit, logSelect(0, 0, 0, data.length), { dataOut: data }));
  });

  it('CDB fields round-trip through both codecs', () => {
    for (const entry of logCommands) {
      const cdb =
        entry.opcode === 0x4c
          ? logSelect(PCR, 0x2f, 0x00, 12, 2)
          : logSense(0x0c, 0, { pc: 3, pointer: 2, alloc: 99 });
      expect([...entry.encode!(entry.decode(cdb))]).toEqual([...cdb]);
    }
  });
});
