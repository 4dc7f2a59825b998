import { describe, expect, it, vi } from 'vitest';
import { FaultInjectionBackend } from '../backends/fault-injection.js';
import { MemoryBackend } from '../backends/memory.js';
import { BackendIoError } from '../core/backend.js';
import { cdbWith, itAnswers } from '../testing/harness.js';
import { expectCheck, expectGood, makeUnit, readBack, run } from './testing/harness.js';
import { writeAtomicEntry } from './write-atomic.js';

/** WRITE ATOMIC(16): WRPROTECT/DPO/FUA in byte 1, LBA 2-9, ATOMIC BOUNDARY 10-11, TRANSFER LENGTH 12-13. */
const atomic = (lba: bigint, blocks: number, boundary = 0, byte1 = 0, byte14 = 0) =>
  cdbWith(16, 0x9c, [1, 1, byte1], [2, 8, lba], [10, 2, boundary], [12, 2, blocks], [14, 1, byte14]);
const data = (blocks: number, value = 0xa6) => new Uint8Array(blocks * 512).fill(value);

/** Block Limits VPD: up to 64 blocks, LBAs aligned to 8, lengths in 4s; with a boundary, 32 blocks and boundaries up to 16. */
const limits = {
  maxAtomicTransferBlocks: 64,
  atomicAlignment: 8,
  atomicTransferLengthGranularity: 4,
  maxAtomicTransferBlocksWithBoundary: 32,
  maxAtomicBoundaryBlocks: 16,
};
const atomicUnit = () => makeUnit({ config: limits }).unit;

describe('WRITE ATOMIC(16) 9Ch named vectors (2048 blocks, last LBA 2047; limits as above)', () => {
  itAnswers(
    [
      { name: 'one granule at LBA 0', cdb: atomic(0n, 4), dataOut: data(4) },
      { name: 'MAXIMUM ATOMIC TRANSFER LENGTH', cdb: atomic(0n, 64), dataOut: data(64) },
      { name: 'the last aligned 8 blocks', cdb: atomic(2040n, 8), dataOut: data(8) },
      { name: 'DPO and FUA', cdb: atomic(8n, 4, 0, 0x18), dataOut: data(4) },
      { name: 'TRANSFER LENGTH 0', cdb: atomic(0n, 0) },
      { name: 'TRANSFER LENGTH 0 at the capacity', cdb: atomic(2048n, 0) },
      {
        name: 'over MAXIMUM ATOMIC TRANSFER LENGTH: byte 12',
        cdb: atomic(0n, 68),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 12,
      },
      {
        name: 'not a multiple of ATOMIC TRANSFER LENGTH GRANULARITY: byte 12',
        cdb: atomic(0n, 6),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 12,
      },
      {
        name: 'an LBA off ATOMIC ALIGNMENT: byte 2',
        cdb: atomic(4n, 4),
        dataOut: data(4),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 2,
      },
      { name: 'ATOMIC BOUNDARY 8 and 32 blocks', cdb: atomic(0n, 32, 8), dataOut: data(32) },
      {
        name: 'with a boundary, over MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY: byte 12',
        cdb: atomic(0n, 36, 8),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 12,
      },
      {
        name: 'ATOMIC BOUNDARY over MAXIMUM ATOMIC BOUNDARY SIZE: byte 10',
        cdb: atomic(0n, 32, 20),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 10,
      },
      {
        name: 'ATOMIC BOUNDARY not a multiple of the granularity: byte 10',
        cdb: atomic(0n, 32, 6),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 10,
      },
      { name: 'range straddling the last LBA', cdb: atomic(2040n, 12), check: 'LBA_OUT_OF_RANGE' },
      {
        name: 'TRANSFER LENGTH 0 one alignment past the capacity',
        cdb: atomic(2056n, 0),
        check: 'LBA_OUT_OF_RANGE',
      },
      { name: 'LBA 2^63', cdb: atomic(1n << 63n, 0), check: 'LBA_OUT_OF_RANGE' },
      { name: 'LBA -8', cdb: atomic((1n << 64n) - 8n, 0), check: 'LBA_OUT_OF_RANGE' },
      ...[1, 2, 3, 4, 5, 6, 7].map((wrprotect) => ({
        name: `WRPROTECT ${wrprotect}: byte 1 bit 7`,
        cdb: atomic(0n, 4, 0, wrprotect << 5),
        check: 'INVALID_FIELD_IN_CDB' as const,
        byte: 1,
        bit: 7,
      })),
      {
        name: 'byte 1 bit 2 is reserved',
        cdb: atomic(0n, 4, 0, 0x04),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 1,
        bit: 2,
      },
      {
        name: 'byte 14 bit 6 is reserved',
        cdb: atomic(0n, 4, 0, 0, 0x40),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 14,
        bit: 6,
      },
      {
        name: 'a short Data-Out',
        cdb: atomic(0n, 8),
        dataOut: data(4),
        check: 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT',
      },
    ],
    atomicUnit,
  );
  itAnswers([
    {
      name: 'no atomic length configured: not offered',
      cdb: atomic(0n, 1),
      check: 'INVALID_COMMAND_OPERATION_CODE',
    },
  ]);
  itAnswers(
    [
      {
        name: 'MAXIMUM ATOMIC BOUNDARY SIZE 0: any ATOMIC BOUNDARY is refused at byte 10',
        cdb: atomic(0n, 1, 1),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 10,
      },
      { name: 'no alignment or granularity: one block anywhere', cdb: atomic(2047n, 1), dataOut: data(1) },
    ],
    () => makeUnit({ config: { maxAtomicTransferBlocks: 8 } }).unit,
  );
});

describe('WRITE ATOMIC(16) is all or nothing', () => {
  /** A backend whose write lands one block at a time, waiting between blocks. */
  function blockByBlock() {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const backend = {
      blockSize: 512,
      blockCount: 64,
      failAfter: Number.POSITIVE_INFINITY,
      read: inner.read.bind(inner),
      async write(lba: number, bytes: Uint8Array) {
        for (let i = 0; i < bytes.length / 512; i++) {
          if (i === backend.failAfter) {
            backend.failAfter = Number.POSITIVE_INFINITY;
            throw new BackendIoError('EIO', lba + i);
          }
          inner.write(lba + i, bytes.subarray(i * 512, (i + 1) * 512));
          await new Promise((r) => setTimeout(r, 1));
        }
      },
      flush: () => {},
    };
    return { inner, backend };
  }

  it('a READ issued while the write is landing sees all of it or none of it', async () => {
    const { inner, backend } = blockByBlock();
    const { unit } = makeUnit({ backend, config: { maxAtomicTransferBlocks: 8 } });
    const write = run(unit, atomic(0n, 8), { dataOut: data(8, 7) });
    await new Promise((r) => setTimeout(r, 2)); // some blocks are on the medium now
    const read = await run(unit, [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], { dataInLength: 8 * 512 });
    expectGood(await write);
    expect(read.data.every((b) => b === 7)).toBe(true);
    expect(readBack(inner, 0, 8).every((b) => b === 7)).toBe(true);
  });

  it('a write that fails part-way is undone: the old blocks are back, WRITE ERROR with the LBA', async () => {
    const { inner, backend } = blockByBlock();
    inner.write(0, data(8, 1));
    backend.failAfter = 3;
    const { unit } = makeUnit({ backend, config: { maxAtomicTransferBlocks: 8 } });
    expectCheck(await run(unit, atomic(0n, 8), { dataOut: data(8, 2) }), 'WRITE_ERROR', { information: 3 });
    expect(readBack(inner, 0, 8).every((b) => b === 1)).toBe(true);
  });

  it('when the old blocks cannot be put back either, that is logged and the write error reported', async () => {
    const backend = new FaultInjectionBackend(new MemoryBackend({ blockSize: 512, blockCount: 64 }), {
      failWrites: () => true,
    });
    const logger = { debug: vi.fn(), warn: vi.fn(), error: vi.fn() };
    const { unit } = makeUnit({ backend, logger, config: { maxAtomicTransferBlocks: 8 } });
    expectCheck(await run(unit, atomic(0n, 2), { dataOut: data(2) }), 'WRITE_ERROR', { information: 0 });
    expect(logger.error).toHaveBeenCalledOnce();
  });

  it('FUA, or WCE=0, makes it durable before GOOD', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const write = vi.spyOn(inner, 'write');
    const { unit } = makeUnit({ backend: inner, config: { maxAtomicTransferBlocks: 8 } });
    expectGood(await run(unit, atomic(0n, 1), { dataOut: data(1) }));
    expectGood(await run(unit, atomic(0n, 1, 0, 0x08), { dataOut: data(1) }));
    unit.modes.writeCacheEnabled = false;
    expectGood(await run(unit, atomic(0n, 1), { dataOut: data(1) }));
    expect(write.mock.calls.map((call) => call[2])).toEqual([{ fua: false }, { fua: true }, { fua: true }]);
  });

  it('round-trips its CDB fields', () => {
    const f = {
      lba: 2 ** 45 + 1,
      blocks: 0xfedc,
      boundary: 0x1234,
      dpo: true,
      fua: true,
      protect: 0,
      group: 7,
    };
    expect(writeAtomicEntry.decode(writeAtomicEntry.encode!(f))).toEqual(f);
  });
});
