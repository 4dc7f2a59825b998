import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { BackendIoError } from '../core/backend.js';
import { cdbWith, itAnswers } from '../testing/harness.js';
import { orWriteEntry } from './orwrite.js';
import {
  expectCheck,
  expectGood,
  filled,
  fuaRecorder,
  makeUnit,
  readBack,
  run,
  slowBackend,
} from './testing/harness.js';

/** ORWRITE(16): ORPROTECT/DPO/FUA in byte 1, LBA 2-9, TRANSFER LENGTH 10-13, GROUP NUMBER 14. */
const orwrite = (lba: bigint, blocks: number, byte1 = 0, byte14 = 0) =>
  cdbWith(16, 0x8b, [1, 1, byte1], [2, 8, lba], [10, 4, blocks], [14, 1, byte14]);
const read16 = (lba: number, blocks: number) => cdbWith(16, 0x88, [2, 8, lba], [10, 4, blocks]);
const block = new Uint8Array(512).fill(0xa6);

describe('ORWRITE(16) 8Bh named vectors (2048 blocks, last LBA 2047)', () => {
  itAnswers([
    { name: 'one block at LBA 0', cdb: orwrite(0n, 1), dataOut: block },
    { name: 'the last LBA', cdb: orwrite(2047n, 1), dataOut: block },
    { name: 'DPO and FUA', cdb: orwrite(0n, 1, 0x18), dataOut: block },
    { name: 'GROUP NUMBER 3Fh', cdb: orwrite(0n, 1, 0, 0x3f), dataOut: block },
    { name: 'TRANSFER LENGTH 0 at LBA 0', cdb: orwrite(0n, 0) },
    { name: 'TRANSFER LENGTH 0 at the capacity', cdb: orwrite(2048n, 0) },
    { name: 'TRANSFER LENGTH 0 one past the capacity', cdb: orwrite(2049n, 0), check: 'LBA_OUT_OF_RANGE' },
    { name: 'LBA 2^63', cdb: orwrite(1n << 63n, 0), check: 'LBA_OUT_OF_RANGE' },
    { name: 'LBA -1', cdb: orwrite((1n << 64n) - 1n, 0), check: 'LBA_OUT_OF_RANGE' },
    { name: 'range straddling the last LBA', cdb: orwrite(2047n, 2), check: 'LBA_OUT_OF_RANGE' },
    ...[1, 2, 3, 4, 5, 6, 7].map((orprotect) => ({
      name: `ORPROTECT ${orprotect}: no protection information, INVALID FIELD IN CDB at byte 1 bit 7`,
      cdb: orwrite(0n, 1, orprotect << 5),
      dataOut: block,
      check: 'INVALID_FIELD_IN_CDB' as const,
      byte: 1,
      bit: 7,
    })),
    {
      name: 'byte 1 bit 2 is reserved',
      cdb: orwrite(0n, 1, 0x04),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 1,
      bit: 2,
    },
    {
      name: 'byte 1 bit 1 (FUA_NV) is obsolete',
      cdb: orwrite(0n, 1, 0x02),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 1,
      bit: 1,
    },
    {
      name: 'byte 14 bit 7 is reserved',
      cdb: orwrite(0n, 1, 0, 0x80),
      check: 'INVALID_FIELD_IN_CDB',
      byte: 14,
      bit: 7,
    },
    {
      name: 'a short Data-Out',
      cdb: orwrite(0n, 2),
      dataOut: block,
      check: 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT',
    },
  ]);
  itAnswers(
    [
      {
        name: 'TRANSFER LENGTH above MAXIMUM TRANSFER LENGTH: INVALID FIELD IN CDB at byte 10',
        cdb: orwrite(0n, 9),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 10,
      },
    ],
    () => makeUnit({ config: { maxTransferBlocks: 8 } }).unit,
  );
  itAnswers(
    [{ name: 'a read-only unit', cdb: orwrite(0n, 1), dataOut: block, check: 'WRITE_PROTECTED' }],
    () => makeUnit({ readOnly: true }).unit,
  );
});

describe('ORWRITE(16) behaviour', () => {
  it('ORs the Data-Out into the medium and leaves the Data-Out buffer alone', async () => {
    const { unit, backend } = makeUnit();
    await backend.write(
      10,
      filled(1024, (i) => (i % 2 === 0 ? 0x0f : 0x00)),
      { fua: false },
    );
    const data = filled(1024, (i) => (i < 512 ? 0xf0 : 0x01));
    const copy = data.slice();
    expectGood(await run(unit, orwrite(10n, 2), { dataOut: data }));
    expect(readBack(backend, 10, 2)).toEqual(
      filled(1024, (i) => (i < 512 ? 0xf0 : 0x01) | (i % 2 === 0 ? 0x0f : 0x00)),
    );
    expect(data).toEqual(copy);
    expect((await run(unit, read16(10, 1), { dataInLength: 512 })).data[0]).toBe(0xff);
  });

  it('FUA, or WCE=0, makes the write durable before GOOD', async () => {
    const { backend, seen } = fuaRecorder(new MemoryBackend({ blockSize: 512, blockCount: 64 }));
    const { unit } = makeUnit({ backend });
    expectGood(await run(unit, orwrite(0n, 1), { dataOut: block }));
    expectGood(await run(unit, orwrite(0n, 1, 0x08), { dataOut: block }));
    unit.modes.writeCacheEnabled = false;
    expectGood(await run(unit, orwrite(0n, 1), { dataOut: block }));
    expect(seen).toEqual([false, true, true]);
  });

  it('is one uninterrupted read-OR-write: concurrent ORWRITEs of one block lose no bit', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    // Every call waits, so without the exclusive lock all eight would read the same zeros.
    const { unit } = makeUnit({ backend: slowBackend(inner) });
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, bit) => run(unit, orwrite(3n, 1), { dataOut: filled(512, 1 << bit) })),
    );
    for (const r of results) expectGood(r);
    expect(readBack(inner, 3, 1).every((b) => b === 0xff)).toBe(true);
  });

  it('a read failure is UNRECOVERED READ ERROR and nothing is written; a write failure is WRITE ERROR', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    let failRead = true;
    const backend = {
      blockSize: 512,
      blockCount: 64,
      read: (lba: number, into: Uint8Array) => {
        if (failRead) throw new BackendIoError('bad sector', lba + 1);
        inner.read(lba, into);
      },
      write: (lba: number) => {
        throw new BackendIoError('EIO', lba);
      },
      flush: () => {},
    };
    const { unit } = makeUnit({ backend });
    expectCheck(await run(unit, orwrite(4n, 2), { dataOut: filled(1024, 1) }), 'UNRECOVERED_READ_ERROR', {
      information: 5,
    });
    failRead = false;
    expectCheck(await run(unit, orwrite(4n, 2), { dataOut: filled(1024, 1) }), 'WRITE_ERROR', {
      information: 4,
    });
    expect(readBack(inner, 4, 2).every((b) => b === 0)).toBe(true);
  });

  it('round-trips its CDB fields', () => {
    const f = { lba: 2 ** 40 + 9, blocks: 0x10203, dpo: true, fua: true, protect: 0, group: 0x2a };
    expect(orWriteEntry.decode(orWriteEntry.encode!(f))).toEqual(f);
  });
});
