import { describe, expect, it, vi } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { putBe16, putBe32, putBe64 } from '../core/bytes.js';
import { expectCheck, expectGood, makeUnit, pattern, run } from '../testing/harness.js';
import { type ReadWriteFields, readWriteCommands } from './read-write.js';

const entry = (name: string) => readWriteCommands.find((e) => e.name === name)!;
const fields = (lba: number, blocks: number, extra: Partial<ReadWriteFields> = {}): ReadWriteFields => ({
  lba,
  blocks,
  dpo: false,
  fua: false,
  protect: 0,
  group: 0,
  ...extra,
});
const cdbOf = (name: string, f: ReadWriteFields) => entry(name).encode!(f);

describe('READ(6)/WRITE(6) CDB (SBC-4 5.10, 5.37)', () => {
  it('go-tcmu regression: the LBA is 21 bits over bytes 1-3', () => {
    const f = entry('READ(6)').decode(Uint8Array.from([0x08, 0x1f, 0xab, 0xcd, 0x01, 0]));
    expect(f.lba).toBe(0x1fabcd);
    expect(f.blocks).toBe(1);
  });

  it('go-tcmu regression: TRANSFER LENGTH 0 means 256 blocks (and not the LBA)', () => {
    const f = entry('READ(6)').decode(Uint8Array.from([0x08, 0, 0, 0, 0, 0]));
    expect(f).toMatchObject({ lba: 0, blocks: 256 });
    expect([...cdbOf('WRITE(6)', fields(5, 256))]).toEqual([0x0a, 0, 0, 5, 0, 0]);
  });

  it('READ(6) of 256 blocks returns 256 blocks of data', async () => {
    const { unit } = makeUnit();
    expect(expectGood(await run(unit, [0x08, 0, 0, 0, 0, 0])).length).toBe(256 * 512);
  });

  it('READ(6) ignores nothing: bits 7-5 of byte 1 are reserved', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, [0x08, 0x20, 0, 0, 1, 0]), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 5 });
  });
});

describe('CDB codecs round-trip', () => {
  const cases: Array<[string, ReadWriteFields]> = [
    ['READ(10)', fields(0x01020304, 0xffff, { dpo: true, fua: true, group: 0x3f })],
    ['WRITE(10)', fields(0xffffffff, 1, { fua: true })],
    ['READ(12)', fields(7, 0xffffffff, { group: 5 })],
    ['WRITE(12)', fields(8, 9, { dpo: true })],
    ['READ(16)', fields(2 ** 40 + 3, 0x10000, { fua: true, group: 1 })],
    ['WRITE(16)', fields(Number.MAX_SAFE_INTEGER, 2)],
    ['READ(32)', fields(2 ** 33, 77, { dpo: true, group: 2 })],
    ['WRITE(32)', fields(1, 0xfffffffe, { fua: true })],
    ['READ(6)', fields(0x1fffff, 255)],
    ['WRITE(6)', fields(0, 1)],
  ];
  for (const [name, f] of cases) {
    it(name, () => {
      const e = entry(name);
      const cdb = e.encode!(f);
      expect(cdb.length).toBe(e.cdbLength);
      expect(e.decode(cdb)).toEqual(f);
    });
  }

  it('64-bit LBAs above 2^53 decode as Infinity and are out of range', async () => {
    const cdb = new Uint8Array(16);
    cdb[0] = 0x88;
    cdb.fill(0xff, 2, 10);
    putBe32(cdb, 10, 1);
    expect(entry('READ(16)').decode(cdb).lba).toBe(Number.POSITIVE_INFINITY);
    expectCheck(await run(makeUnit().unit, cdb), 'LBA_OUT_OF_RANGE');
  });
});

describe('READ and WRITE behaviour', () => {
  for (const [read, write] of [
    ['READ(10)', 'WRITE(10)'],
    ['READ(12)', 'WRITE(12)'],
    ['READ(16)', 'WRITE(16)'],
    ['READ(32)', 'WRITE(32)'],
    ['READ(6)', 'WRITE(6)'],
  ] as const) {
    it(`${write} then ${read} returns the data`, async () => {
      const { unit } = makeUnit();
      const data = pattern(3 * 512, 3);
      expectGood(await run(unit, cdbOf(write, fields(100, 3)), { dataOut: data }));
      expect(expectGood(await run(unit, cdbOf(read, fields(100, 3))))).toEqual(data);
    });
  }

  it('a transfer length of 0 is GOOD with no data and touches nothing', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    const read = vi.spyOn(backend, 'read');
    const write = vi.spyOn(backend, 'write');
    const { unit } = makeUnit({ backend });
    expect(await run(unit, cdbOf('READ(10)', fields(3, 0)), { dataInLength: 512 })).toEqual({
      status: 0,
      residual: 512,
      direction: 'in',
    });
    expectGood(await run(unit, cdbOf('WRITE(16)', fields(16, 0))));
    expect(read).not.toHaveBeenCalled();
    expect(write).not.toHaveBeenCalled();
  });

  it('LBA OUT OF RANGE: past the end, straddling the end, and 32-bit overflow', async () => {
    const { unit } = makeUnit({ memory: { blockCount: 100 } });
    expectCheck(await run(unit, cdbOf('READ(10)', fields(100, 1))), 'LBA_OUT_OF_RANGE');
    expectCheck(await run(unit, cdbOf('READ(10)', fields(99, 2))), 'LBA_OUT_OF_RANGE');
    expectCheck(await run(unit, cdbOf('READ(12)', fields(0xffffffff, 2))), 'LBA_OUT_OF_RANGE');
    expectCheck(await run(unit, cdbOf('READ(10)', fields(101, 0))), 'LBA_OUT_OF_RANGE');
    expectGood(await run(unit, cdbOf('READ(10)', fields(99, 1))));
    expectGood(await run(unit, cdbOf('READ(10)', fields(100, 0))));
    const writeOver = await run(unit, cdbOf('WRITE(16)', fields(2 ** 53 - 1, 2)), {
      dataOut: new Uint8Array(1024),
    });
    expectCheck(writeOver, 'LBA_OUT_OF_RANGE');
  });

  it('a WRITE out of range is reported before the missing Data-Out', async () => {
    const { unit } = makeUnit({ memory: { blockCount: 100 } });
    expectCheck(await run(unit, cdbOf('WRITE(10)', fields(100, 1))), 'LBA_OUT_OF_RANGE');
  });

  it('a transfer over MAXIMUM TRANSFER LENGTH is INVALID FIELD IN CDB at the transfer length', async () => {
    const { unit } = makeUnit({ config: { maxTransferBlocks: 8 } });
    expectCheck(await run(unit, cdbOf('READ(10)', fields(0, 9))), 'INVALID_FIELD_IN_CDB', { byte: 7 });
    expectCheck(await run(unit, cdbOf('READ(16)', fields(0, 9))), 'INVALID_FIELD_IN_CDB', { byte: 10 });
    expectCheck(await run(unit, cdbOf('WRITE(12)', fields(0, 9))), 'INVALID_FIELD_IN_CDB', { byte: 6 });
    expectCheck(await run(unit, cdbOf('READ(32)', fields(0, 9))), 'INVALID_FIELD_IN_CDB', { byte: 28 });
    expectGood(await run(unit, cdbOf('READ(10)', fields(0, 8))));
  });

  it('RDPROTECT/WRPROTECT non-zero: INVALID FIELD IN CDB at the protect field (no protection information)', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, cdbOf('READ(10)', fields(0, 1, { protect: 1 }))), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 7,
    });
    const w = await run(unit, cdbOf('WRITE(16)', fields(0, 1, { protect: 3 })), {
      dataOut: new Uint8Array(512),
    });
    expectCheck(w, 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 7 });
    expectCheck(await run(unit, cdbOf('READ(32)', fields(0, 1, { protect: 4 }))), 'INVALID_FIELD_IN_CDB', {
      byte: 10,
      bit: 7,
    });
  });

  it('READ(32) accepts and ignores the expected tag fields', async () => {
    const { unit } = makeUnit();
    const cdb = cdbOf('READ(32)', fields(0, 1));
    putBe32(cdb, 20, 0x12345678);
    putBe16(cdb, 24, 0xffff);
    expect(expectGood(await run(unit, cdb)).length).toBe(512);
  });

  it('FUA writes are durable (backend fua) even with the write cache on; WCE=0 makes every write durable', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    const write = vi.spyOn(backend, 'write');
    const { unit } = makeUnit({ backend });
    const one = new Uint8Array(512);
    await run(unit, cdbOf('WRITE(10)', fields(0, 1)), { dataOut: one });
    await run(unit, cdbOf('WRITE(10)', fields(0, 1, { fua: true })), { dataOut: one });
    unit.modes.writeCacheEnabled = false;
    await run(unit, cdbOf('WRITE(10)', fields(0, 1)), { dataOut: one });
    expect(write.mock.calls.map((c) => c[2])).toEqual([{ fua: false }, { fua: true }, { fua: true }]);
  });

  it('DPO is accepted (a cache hint)', async () => {
    const { unit } = makeUnit();
    expectGood(await run(unit, cdbOf('READ(16)', fields(0, 1, { dpo: true }))));
  });

  it('works over an asynchronous backend', async () => {
    const memory = new MemoryBackend({ blockSize: 4096, blockCount: 16 });
    const backend = {
      blockSize: 4096,
      blockCount: 16,
      read: async (lba: number, into: Uint8Array) => memory.read(lba, into),
      write: async (lba: number, data: Uint8Array) => memory.write(lba, data, { fua: false }),
      flush: async () => {},
    };
    const { unit } = makeUnit({ backend });
    const data = pattern(8192, 9);
    expectGood(await run(unit, cdbOf('WRITE(10)', fields(2, 2)), { dataOut: data }));
    expect(expectGood(await run(unit, cdbOf('READ(10)', fields(2, 2))))).toEqual(data);
  });

  it('the initiator buffer caps READ data (overflow is truncated)', async () => {
    const { unit } = makeUnit();
    const result = await run(unit, cdbOf('READ(10)', fields(0, 2)), { dataInLength: 512 });
    expect(result.dataIn?.length).toBe(512);
    expect(result.residual).toBe(0);
  });

  it('a 16-byte CDB with a large LBA within a large device works', async () => {
    const { unit } = makeUnit({ memory: { blockCount: 2 ** 34 } });
    const cdb = new Uint8Array(16);
    cdb[0] = 0x8a;
    putBe64(cdb, 2, 2 ** 34 - 1);
    putBe32(cdb, 10, 1);
    expectGood(await run(unit, cdb, { dataOut: pattern(512, 1) }));
    cdb[0] = 0x88;
    expect(expectGood(await run(unit, cdb))).toEqual(pattern(512, 1));
  });
});
