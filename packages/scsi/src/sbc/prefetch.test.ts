import { describe, expect, it, vi } from 'vitest';
import { FaultInjectionBackend } from '../backends/fault-injection.js';
import { MemoryBackend } from '../backends/memory.js';
import type { BlockBackend } from '../core/backend.js';
import { ScsiStatus } from '../core/status.js';
import { cdbWith, expectCheck, itAnswers, makeUnit, run } from '../testing/harness.js';
import { prefetchCommands } from './prefetch.js';

/** PRE-FETCH(10): IMMED in byte 1 bit 1, LBA 2-5, GROUP NUMBER 6, PREFETCH LENGTH 7-8. */
const prefetch10 = (lba: number, blocks: number, byte1 = 0, group = 0, control = 0) =>
  cdbWith(10, 0x34, [1, 1, byte1], [2, 4, lba], [6, 1, group], [7, 2, blocks], [9, 1, control]);
/** PRE-FETCH(16): LBA 2-9, PREFETCH LENGTH 10-13, GROUP NUMBER 14. */
const prefetch16 = (lba: bigint, blocks: number, byte1 = 0, group = 0) =>
  cdbWith(16, 0x90, [1, 1, byte1], [2, 8, lba], [10, 4, blocks], [14, 1, group]);
const IMMED = 0x02;

/** A memory unit of 2048 blocks whose cache (MAXIMUM PREFETCH LENGTH) holds 16. */
const cached = () => makeUnit({ config: { maxPrefetchBlocks: 16 } }).unit;

describe('PRE-FETCH(10) 34h named vectors (2048 blocks, last LBA 2047, cache of 16 blocks)', () => {
  itAnswers(
    [
      { name: 'one block: in the cache, CONDITION MET', cdb: prefetch10(0, 1), status: 'CONDITION_MET' },
      { name: 'the last LBA', cdb: prefetch10(2047, 1), status: 'CONDITION_MET' },
      { name: 'as many blocks as the cache holds', cdb: prefetch10(100, 16), status: 'CONDITION_MET' },
      {
        name: 'IMMED: CONDITION MET at once when the range fits',
        cdb: prefetch10(0, 1, IMMED),
        status: 'CONDITION_MET',
      },
      { name: 'GROUP NUMBER 3', cdb: prefetch10(0, 1, 0, 3), status: 'CONDITION_MET' },
      { name: 'IMMED and GROUP NUMBER 3', cdb: prefetch10(0, 1, IMMED, 3), status: 'CONDITION_MET' },
      {
        name: 'PREFETCH LENGTH 0 from LBA 2040: the last 8 blocks fit',
        cdb: prefetch10(2040, 0),
        status: 'CONDITION_MET',
      },
      { name: 'PREFETCH LENGTH 0 from LBA 0: more than fits, GOOD', cdb: prefetch10(0, 0) },
      { name: 'PREFETCH LENGTH 0 from LBA 0 with IMMED: GOOD', cdb: prefetch10(0, 0, IMMED) },
      {
        name: 'PREFETCH LENGTH 0 at the capacity: nothing to fetch',
        cdb: prefetch10(2048, 0),
        status: 'CONDITION_MET',
      },
      { name: 'range straddling the last LBA', cdb: prefetch10(2047, 2), check: 'LBA_OUT_OF_RANGE' },
      {
        name: 'PREFETCH LENGTH 0 one past the capacity',
        cdb: prefetch10(2049, 0),
        check: 'LBA_OUT_OF_RANGE',
      },
      { name: 'LBA 2^31', cdb: prefetch10(0x8000_0000, 0), check: 'LBA_OUT_OF_RANGE' },
      { name: 'LBA FFFFFFFFh', cdb: prefetch10(0xffff_ffff, 0), check: 'LBA_OUT_OF_RANGE' },
      {
        name: 'PREFETCH LENGTH above MAXIMUM PREFETCH LENGTH: INVALID FIELD IN CDB at byte 7',
        cdb: prefetch10(0, 17),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 7,
      },
      {
        name: 'byte 1 bit 0 is obsolete',
        cdb: prefetch10(0, 1, 0x01),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 1,
        bit: 0,
      },
      {
        name: 'byte 1 bit 2 is reserved',
        cdb: prefetch10(0, 1, 0x04),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 1,
        bit: 2,
      },
      {
        name: 'byte 6 bit 6 is reserved',
        cdb: prefetch10(0, 1, 0, 0x40),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 6,
        bit: 6,
      },
      { name: 'NACA', cdb: prefetch10(0, 1, 0, 0, 0x04), check: 'INVALID_FIELD_IN_CDB', byte: 9, bit: 2 },
    ],
    cached,
  );
});

describe('PRE-FETCH(16) 90h named vectors', () => {
  itAnswers(
    [
      { name: 'the last LBA', cdb: prefetch16(2047n, 1), status: 'CONDITION_MET' },
      { name: 'IMMED', cdb: prefetch16(0n, 16, IMMED), status: 'CONDITION_MET' },
      { name: 'range straddling the last LBA', cdb: prefetch16(2040n, 9), check: 'LBA_OUT_OF_RANGE' },
      { name: 'LBA 2^63', cdb: prefetch16(1n << 63n, 0), check: 'LBA_OUT_OF_RANGE' },
      { name: 'LBA -1', cdb: prefetch16((1n << 64n) - 1n, 0), check: 'LBA_OUT_OF_RANGE' },
      {
        name: 'PREFETCH LENGTH above MAXIMUM PREFETCH LENGTH: byte 10',
        cdb: prefetch16(0n, 17),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 10,
      },
      {
        name: 'byte 14 bit 7 is reserved',
        cdb: prefetch16(0n, 1, 0, 0x80),
        check: 'INVALID_FIELD_IN_CDB',
        byte: 14,
        bit: 7,
      },
    ],
    cached,
  );
});

describe('PRE-FETCH and the backend cache (SBC-4 5.9)', () => {
  it('reads nothing from a backend without a cache and answers GOOD: nothing fits', async () => {
    const memory = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const read = vi.spyOn(memory, 'read');
    const backend: BlockBackend = {
      blockSize: 512,
      blockCount: 64,
      read: memory.read.bind(memory),
      write: memory.write.bind(memory),
      flush: () => {},
    };
    const { unit } = makeUnit({ backend });
    for (const cdb of [prefetch10(0, 8), prefetch10(0, 8, IMMED), prefetch16(0n, 0)]) {
      const result = await run(unit, cdb);
      expect(result).toEqual({ status: ScsiStatus.GOOD, residual: 0, direction: 'none' });
    }
    expect(read).not.toHaveBeenCalled();
  });

  it('asks the backend for the range, or as much of it as the cache holds', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 2048 });
    const prefetch = vi.spyOn(backend, 'prefetch');
    const { unit } = makeUnit({ backend, config: { maxPrefetchBlocks: 16 } });
    await run(unit, prefetch10(5, 3));
    await run(unit, prefetch16(100n, 0));
    await run(unit, prefetch10(2048, 0));
    expect(prefetch.mock.calls.map(([lba, blocks]) => [lba, blocks])).toEqual([
      [5, 3],
      [100, 16],
    ]);
  });

  it('MAXIMUM PREFETCH LENGTH 0: no limit, the whole rest of the medium fits', async () => {
    const { unit } = makeUnit({ config: { maxPrefetchBlocks: 0 } });
    expect((await run(unit, prefetch10(0, 0))).status).toBe(ScsiStatus.CONDITION_MET);
    expect((await run(unit, prefetch10(0, 0xffff))).status).toBe(ScsiStatus.CHECK_CONDITION); // still the range
  });

  it('a failing read: MEDIUM ERROR with the LBA; with IMMED the status was already given and the failure is logged', async () => {
    const backend = new FaultInjectionBackend(new MemoryBackend({ blockSize: 512, blockCount: 64 }), {
      failReads: [6],
    });
    const logger = { debug: vi.fn(), warn: vi.fn(), error: vi.fn() };
    const { unit } = makeUnit({ backend, logger });
    expectCheck(await run(unit, prefetch10(4, 4)), 'UNRECOVERED_READ_ERROR', { information: 6 });
    expect((await run(unit, prefetch10(4, 4, IMMED))).status).toBe(ScsiStatus.CONDITION_MET);
    await vi.waitFor(() => expect(logger.error).toHaveBeenCalledOnce());
    const sync = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    sync.prefetch = () => {
      throw new Error('EIO');
    };
    const unitSync = makeUnit({ backend: sync, logger }).unit;
    expect((await run(unitSync, prefetch10(0, 1, IMMED))).status).toBe(ScsiStatus.CONDITION_MET);
    expect(logger.error).toHaveBeenCalledTimes(2);
  });

  it('is refused while the unit is stopped: NOT READY, INITIALIZING COMMAND REQUIRED', async () => {
    const { unit } = makeUnit();
    unit.stopped = true;
    expectCheck(await run(unit, prefetch10(0, 1)), 'NOT_READY_INITIALIZING_COMMAND_REQUIRED');
  });

  it('round-trips its CDB fields', () => {
    for (const e of prefetchCommands) {
      const f = { lba: 0x1234, blocks: 0xff, immediate: true, group: 0x21 };
      expect(e.decode(e.encode!(f))).toEqual(f);
    }
  });
});
