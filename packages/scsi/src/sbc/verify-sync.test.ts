import { describe, expect, it, vi } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { BackendIoError } from '../core/backend.js';
import { cdbWith, expectCheck, expectGood, itAnswers, makeUnit, pattern, run } from '../testing/harness.js';
import { syncCacheCommands } from './sync-cache.js';
import { type VerifyFields, verifyCommands } from './verify.js';

const entry = (name: string) => verifyCommands.find((e) => e.name === name)!;
const vf = (
  lba: number,
  blocks: number,
  byteCheck: number,
  extra: Partial<VerifyFields> = {},
): VerifyFields => ({
  lba,
  blocks,
  byteCheck,
  dpo: false,
  protect: 0,
  group: 0,
  ...extra,
});
const cdb = (name: string, f: VerifyFields) => entry(name).encode!(f);

async function unitWithData() {
  const { unit, backend } = makeUnit();
  await backend.write(10, pattern(4 * 512, 1), { fua: false });
  return { unit, backend };
}

describe('VERIFY(10/12/16)', () => {
  for (const name of ['VERIFY(10)', 'VERIFY(12)', 'VERIFY(16)']) {
    it(`${name} BYTCHK=0 verifies the medium: GOOD, or MEDIUM ERROR with the failing LBA`, async () => {
      const { unit, backend } = await unitWithData();
      expectGood(await run(unit, cdb(name, vf(10, 4, 0))));
      backend.read = () => {
        throw new BackendIoError('bad sector', 12);
      };
      expectCheck(await run(unit, cdb(name, vf(10, 4, 0))), 'UNRECOVERED_READ_ERROR', { information: 12 });
    });

    it(`${name} BYTCHK=1 compares the Data-Out blocks; MISCOMPARE gives the byte offset`, async () => {
      const { unit } = await unitWithData();
      const same = pattern(4 * 512, 1);
      expectGood(await run(unit, cdb(name, vf(10, 4, 1)), { dataOut: same }));
      const differ = same.slice();
      differ[1500] = differ[1500]! ^ 0xff;
      const sense = expectCheck(
        await run(unit, cdb(name, vf(10, 4, 1)), { dataOut: differ }),
        'MISCOMPARE_DURING_VERIFY_OPERATION',
      );
      expect(sense.information).toBe(1500);
    });
  }

  it('BYTCHK=3 compares one Data-Out block with every block', async () => {
    const { unit, backend } = makeUnit();
    const block = pattern(512, 4);
    for (let i = 0; i < 3; i++) await backend.write(i, block, { fua: false });
    expectGood(await run(unit, cdb('VERIFY(10)', vf(0, 3, 3)), { dataOut: block }));
    const sense = expectCheck(
      await run(unit, cdb('VERIFY(16)', vf(0, 4, 3)), { dataOut: block }),
      'MISCOMPARE_DURING_VERIFY_OPERATION',
    );
    expect(sense.information).toBe(3 * 512);
  });

  it('BYTCHK=2 is reserved: INVALID FIELD IN CDB at byte 1 bit 2', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, cdb('VERIFY(10)', vf(0, 1, 2))), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 2 });
  });

  it('VRPROTECT non-zero: INVALID FIELD IN CDB at byte 1 bit 7', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, cdb('VERIFY(16)', vf(0, 1, 0, { protect: 2 }))), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 7,
    });
  });

  it('range checked; zero blocks is GOOD', async () => {
    const { unit } = makeUnit({ memory: { blockCount: 8 } });
    expectCheck(await run(unit, cdb('VERIFY(10)', vf(7, 2, 0))), 'LBA_OUT_OF_RANGE');
    expectGood(await run(unit, cdb('VERIFY(10)', vf(8, 0, 1))));
  });

  it('long ranges are verified in chunks', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 8192 });
    const read = vi.spyOn(backend, 'read');
    const { unit } = makeUnit({ backend });
    expectGood(await run(unit, cdb('VERIFY(16)', vf(0, 8192, 0))));
    expect(read.mock.calls.length).toBe(4);
  });

  it('round-trips its CDB fields', () => {
    for (const e of verifyCommands) {
      const name = e.name;
      const f = vf(1234, 56, 1, { dpo: true, group: 3 });
      expect(entry(name).decode(cdb(name, f))).toEqual(f);
    }
  });
});

describe('WRITE AND VERIFY(10/12/16)', () => {
  for (const name of ['WRITE AND VERIFY(10)', 'WRITE AND VERIFY(12)', 'WRITE AND VERIFY(16)']) {
    it(`${name} writes durably then verifies`, async () => {
      const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
      const write = vi.spyOn(backend, 'write');
      const { unit } = makeUnit({ backend });
      const data = pattern(2 * 512, 5);
      expectGood(await run(unit, cdb(name, vf(3, 2, 1)), { dataOut: data }));
      expectGood(await run(unit, cdb(name, vf(5, 2, 0)), { dataOut: data }));
      expect(write.mock.calls[0]![2]).toEqual({ fua: true });
      const back = new Uint8Array(1024);
      await backend.read(3, back);
      expect(back).toEqual(data);
    });
  }

  it('a medium that reads back differently is a MISCOMPARE', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    backend.write = () => {}; // drops the data
    const { unit } = makeUnit({ backend });
    const data = pattern(512, 6);
    const sense = expectCheck(
      await run(unit, cdb('WRITE AND VERIFY(10)', vf(0, 1, 1)), { dataOut: data }),
      'MISCOMPARE_DURING_VERIFY_OPERATION',
    );
    expect(sense.information).toBe(data.findIndex((b) => b !== 0));
  });

  it('BYTCHK=3 is not valid for WRITE AND VERIFY; read-only units refuse it', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, cdb('WRITE AND VERIFY(16)', vf(0, 1, 3))), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 2,
    });
    const ro = makeUnit({ readOnly: true }).unit;
    expectCheck(
      await run(ro, cdb('WRITE AND VERIFY(10)', vf(0, 1, 0)), { dataOut: new Uint8Array(512) }),
      'WRITE_PROTECTED',
    );
  });

  it('write failure: WRITE ERROR', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    backend.write = () => Promise.reject(new BackendIoError('EIO', 1));
    const { unit } = makeUnit({ backend });
    expectCheck(
      await run(unit, cdb('WRITE AND VERIFY(10)', vf(1, 1, 0)), { dataOut: new Uint8Array(512) }),
      'WRITE_ERROR',
      {
        information: 1,
      },
    );
  });

  it('zero blocks is GOOD; out of range is LBA OUT OF RANGE', async () => {
    const { unit } = makeUnit({ memory: { blockCount: 4 } });
    expectGood(await run(unit, cdb('WRITE AND VERIFY(10)', vf(0, 0, 0))));
    expectCheck(await run(unit, cdb('WRITE AND VERIFY(16)', vf(4, 1, 0))), 'LBA_OUT_OF_RANGE');
  });
});

/** VERIFY(12) / WRITE AND VERIFY(12) CDBs: byte 1 flags, LBA 2-5, length 6-9, GROUP NUMBER 10, CONTROL 11. */
const cdb12 = (opcode: number, flags: number, lba: number, blocks: number, byte10 = 0, control = 0) =>
  cdbWith(12, opcode, [1, 1, flags], [2, 4, lba], [6, 4, blocks], [10, 1, byte10], [11, 1, control]);
const BYTCHK_1 = 0x02;
const BYTCHK_3 = 0x06;
const block = new Uint8Array(512);

describe('VERIFY(12) AFh named vectors (2048 blocks of 512 bytes; last LBA 2047)', () => {
  itAnswers([
    { name: 'BYTCHK 00b on the last LBA', cdb: cdb12(0xaf, 0, 2047, 1) },
    {
      name: 'BYTCHK 01b on the last LBA compares one block',
      cdb: cdb12(0xaf, BYTCHK_1, 2047, 1),
      dataOut: block,
    },
    { name: 'BYTCHK 11b: one block against eight', cdb: cdb12(0xaf, BYTCHK_3, 2040, 8), dataOut: block },
    { name: 'range straddling the last LBA', cdb: cdb12(0xaf, 0, 2047, 2), check: 'LBA_OUT_OF_RANGE' },
    { name: 'VERIFICATION LENGTH 0 at the capacity', cdb: cdb12(0xaf, 0, 2048, 0) },
    {
      name: 'VERIFICATION LENGTH 0 past the capacity',
      cdb: cdb12(0xaf, 0, 2049, 0),
      check: 'LBA_OUT_OF_RANGE',
    },
    { name: 'LBA FFFFFFFFh', cdb: cdb12(0xaf, 0, 0xffffffff, 1), check: 'LBA_OUT_OF_RANGE' },
    {
      name: 'BYTCHK 10b is reserved',
      cdb: cdb12(0xaf, 0x04, 0, 1),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 1,
      bit: 2,
    },
    ...[1, 2, 3, 4, 5, 6, 7].map((vrprotect) => ({
      name: `VRPROTECT ${vrprotect}: no protection information`,
      cdb: cdb12(0xaf, vrprotect << 5, 0, 1),
      check: 'INVALID_FIELD_IN_CDB' as const,
      byte: 1,
      bit: 7,
    })),
    { name: 'DPO is accepted', cdb: cdb12(0xaf, 0x10, 0, 1) },
    {
      name: 'byte 1 bit 3 is reserved',
      cdb: cdb12(0xaf, 0x08, 0, 1),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 1,
      bit: 3,
    },
    {
      name: 'byte 1 bit 0 is obsolete',
      cdb: cdb12(0xaf, 0x01, 0, 1),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 1,
      bit: 0,
    },
    { name: 'GROUP NUMBER 3Fh', cdb: cdb12(0xaf, 0, 0, 1, 0x3f) },
    {
      name: 'byte 10 bit 7 is reserved',
      cdb: cdb12(0xaf, 0, 0, 1, 0x80),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 10,
      bit: 7,
    },
    { name: 'NACA', cdb: cdb12(0xaf, 0, 0, 1, 0, 0x04), check: 'INVALID_FIELD_IN_CDB', byte: 11, bit: 2 },
    {
      name: 'BYTCHK 01b without its Data-Out block',
      cdb: cdb12(0xaf, BYTCHK_1, 0, 2),
      dataOut: block,
      check: 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT',
    },
  ]);
});

describe('VERIFY(12) and the maximum transfer length (Block Limits VPD)', () => {
  const small = () => makeUnit({ config: { maxTransferBlocks: 8 } }).unit;
  itAnswers(
    [
      {
        name: 'BYTCHK 01b over MAXIMUM TRANSFER LENGTH: INVALID FIELD IN CDB at the length (byte 6)',
        cdb: cdb12(0xaf, BYTCHK_1, 0, 9),
        dataOut: new Uint8Array(9 * 512),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 6,
      },
      { name: 'BYTCHK 00b transfers nothing: any length', cdb: cdb12(0xaf, 0, 0, 64) },
    ],
    small,
  );
});

describe('WRITE AND VERIFY(12) AEh named vectors (last LBA 2047)', () => {
  itAnswers([
    { name: 'BYTCHK 00b on the last LBA', cdb: cdb12(0xae, 0, 2047, 1), dataOut: block },
    { name: 'BYTCHK 01b on the last LBA', cdb: cdb12(0xae, BYTCHK_1, 2047, 1), dataOut: block },
    { name: 'range straddling the last LBA', cdb: cdb12(0xae, 0, 2047, 2), check: 'LBA_OUT_OF_RANGE' },
    { name: 'TRANSFER LENGTH 0', cdb: cdb12(0xae, 0, 2048, 0) },
    {
      name: 'BYTCHK 10b is reserved',
      cdb: cdb12(0xae, 0x04, 0, 1),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 1,
      bit: 2,
    },
    {
      name: 'BYTCHK 11b is reserved for WRITE AND VERIFY',
      cdb: cdb12(0xae, BYTCHK_3, 0, 1),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 1,
      bit: 2,
    },
    { name: 'WRPROTECT 1', cdb: cdb12(0xae, 0x20, 0, 1), check: 'INVALID_FIELD_IN_CDB', byte: 1, bit: 7 },
    {
      name: 'a short Data-Out',
      cdb: cdb12(0xae, 0, 0, 2),
      dataOut: block,
      check: 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT',
    },
  ]);
  itAnswers(
    [
      {
        name: 'TRANSFER LENGTH over MAXIMUM TRANSFER LENGTH: byte 6',
        cdb: cdb12(0xae, 0, 0, 9),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 6,
      },
    ],
    () => makeUnit({ config: { maxTransferBlocks: 8 } }).unit,
  );
  itAnswers(
    [
      {
        name: 'a read-only unit: WRITE PROTECTED',
        cdb: cdb12(0xae, 0, 0, 1),
        dataOut: block,
        check: 'WRITE_PROTECTED',
      },
    ],
    () => makeUnit({ readOnly: true }).unit,
  );
});

describe('SYNCHRONIZE CACHE(10/16) (SBC-4 5.27-5.28)', () => {
  const sync = (name: string, lba: number, blocks: number, immediate = false) => {
    const e = syncCacheCommands.find((c) => c.name === name);
    if (!e?.encode) throw new Error(`no ${name}`);
    return e.encode({ lba, blocks, immediate, group: 0 });
  };

  for (const name of ['SYNCHRONIZE CACHE(10)', 'SYNCHRONIZE CACHE(16)']) {
    it(`${name} flushes the backend, range checked (0 blocks = to the end)`, async () => {
      const backend = new MemoryBackend({ blockSize: 512, blockCount: 100 });
      const flush = vi.spyOn(backend, 'flush');
      const { unit } = makeUnit({ backend });
      expectGood(await run(unit, sync(name, 0, 0)));
      expectGood(await run(unit, sync(name, 50, 50)));
      expectCheck(await run(unit, sync(name, 50, 51)), 'LBA_OUT_OF_RANGE');
      expectCheck(await run(unit, sync(name, 101, 0)), 'LBA_OUT_OF_RANGE');
      expect(flush).toHaveBeenCalledTimes(2);
    });
  }

  it('a flush failure is MEDIUM ERROR / WRITE ERROR', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 100 });
    backend.flush = () => Promise.reject(new Error('fsync failed'));
    const { unit } = makeUnit({ backend });
    expectCheck(await run(unit, sync('SYNCHRONIZE CACHE(10)', 0, 0)), 'WRITE_ERROR');
  });

  it('IMMED returns GOOD before the flush ends; a late failure is logged', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 100 });
    let fail: ((e: Error) => void) | undefined;
    backend.flush = () =>
      new Promise<void>((_, reject) => {
        fail = reject;
      });
    const logger = { debug: vi.fn(), warn: vi.fn(), error: vi.fn() };
    const { unit } = makeUnit({ backend, logger });
    expectGood(await run(unit, sync('SYNCHRONIZE CACHE(16)', 0, 0, true)));
    fail!(new Error('late'));
    await new Promise((r) => setTimeout(r, 0));
    expect(logger.error).toHaveBeenCalledOnce();
    backend.flush = () => {
      throw new Error('sync failure');
    };
    expectGood(await run(unit, sync('SYNCHRONIZE CACHE(10)', 0, 0, true)));
    expect(logger.error).toHaveBeenCalledTimes(2);
  });

  it('round-trips its CDB fields', () => {
    for (const e of syncCacheCommands) {
      const f = { lba: 77, blocks: 9, immediate: true, group: 4 };
      expect(e.decode(e.encode!(f))).toEqual(f);
    }
  });
});
