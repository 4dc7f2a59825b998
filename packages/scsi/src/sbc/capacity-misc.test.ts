import { describe, expect, it, vi } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { be32, be64 } from '../core/bytes.js';
import { expectCheck, expectGood, makeUnit, run } from '../testing/harness.js';
import { readCapacity10Entry as rc10, readCapacity16Entry as rc16 } from './capacity.js';
import { preventAllowEntry, startStopUnitEntry } from './misc.js';

const RC10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const RC16 = (alloc = 32) => [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, alloc, 0, 0];
const startStop = (byte4: number, immed = 0, byte3 = 0) => [0x1b, immed, 0, byte3, byte4, 0];
const prevent = (value: number) => [0x1e, 0, 0, 0, value, 0];

describe('READ CAPACITY(10) (SBC-4 5.20)', () => {
  it('returns the last LBA and the block length', async () => {
    const { unit } = makeUnit({ memory: { blockSize: 4096, blockCount: 1000 } });
    const d = expectGood(await run(unit, RC10));
    expect([be32(d, 0), be32(d, 4)]).toEqual([999, 4096]);
  });

  it('returns FFFFFFFFh when the last LBA does not fit 32 bits', async () => {
    const { unit } = makeUnit({ memory: { blockCount: 2 ** 32 + 5 } });
    expect(be32(expectGood(await run(unit, RC10)), 0)).toBe(0xffffffff);
  });

  it('an exactly 2^32-block medium reports FFFFFFFEh', async () => {
    const { unit } = makeUnit({ memory: { blockCount: 2 ** 32 - 1 } });
    expect(be32(expectGood(await run(unit, RC10)), 0)).toBe(0xfffffffe);
  });

  it('PMI=0 with a non-zero LBA is INVALID FIELD IN CDB at byte 2; PMI=1 accepts it', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, [0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]), 'INVALID_FIELD_IN_CDB', { byte: 2 });
    expectGood(await run(unit, [0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0]));
  });
});

describe('READ CAPACITY(16) (SBC-4 5.21)', () => {
  it('32 bytes: last LBA, block length, LBPME/LBPRZ for a thin zeroing backend', async () => {
    const { unit } = makeUnit({ memory: { blockCount: 2 ** 40 } });
    const d = expectGood(await run(unit, RC16()));
    expect(d.length).toBe(32);
    expect([be64(d, 0), be32(d, 8), d[13], d[14], d[15]]).toEqual([2 ** 40 - 1, 512, 0, 0xc0, 0]);
  });

  it('no LBPME without discard; physical block exponent and lowest aligned LBA', async () => {
    const backend = Object.assign(new MemoryBackend({ blockSize: 512, blockCount: 64, thin: false }), {
      physicalBlockExponent: 3,
    });
    const { unit } = makeUnit({ backend, config: { lowestAlignedLba: 0x123 } });
    const d = expectGood(await run(unit, RC16()));
    expect([d[13], d[14], d[15]]).toEqual([3, 0x01, 0x23]);
  });

  it('allocation length truncates; PMI rule as in (10)', async () => {
    const { unit } = makeUnit();
    expect(expectGood(await run(unit, RC16(12))).length).toBe(12);
    const bad = RC16();
    bad[9] = 1;
    expectCheck(await run(unit, bad), 'INVALID_FIELD_IN_CDB', { byte: 2 });
    bad[14] = 1;
    expectGood(await run(unit, bad));
  });

  it('round-trips both CDBs', () => {
    expect(rc10.decode(rc10.encode!({ lba: 5, pmi: true }))).toEqual({ lba: 5, pmi: true });
    const f = { lba: 2 ** 35, pmi: true, allocationLength: 32 };
    expect(rc16.decode(rc16.encode!(f))).toEqual(f);
  });
});

describe('START STOP UNIT (SBC-4 5.25)', () => {
  it('START=0 flushes and stops: media commands get NOT READY / INITIALIZING COMMAND REQUIRED', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const flush = vi.spyOn(backend, 'flush');
    const { unit } = makeUnit({ backend });
    expectGood(await run(unit, startStop(0)));
    expect(flush).toHaveBeenCalledOnce();
    expectCheck(
      await run(unit, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
      'NOT_READY_INITIALIZING_COMMAND_REQUIRED',
    );
    expectCheck(await run(unit, RC10), 'NOT_READY_INITIALIZING_COMMAND_REQUIRED');
    // Non-media commands still run.
    expectGood(await run(unit, [0x12, 0, 0, 0, 36, 0]));
    expectGood(await run(unit, [0x1a, 0, 0x3f, 0, 255, 0]));
    expectGood(await run(unit, startStop(1)));
    expectGood(await run(unit, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]));
  });

  it('NO_FLUSH stops without flushing; IMMED returns before the flush ends', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const flush = vi.spyOn(backend, 'flush');
    const { unit } = makeUnit({ backend });
    expectGood(await run(unit, startStop(0x04)));
    expect(flush).not.toHaveBeenCalled();
    expect(unit.stopped).toBe(true);
    unit.stopped = false;
    let release: (() => void) | undefined;
    backend.flush = () =>
      new Promise<void>((r) => {
        release = r;
      });
    expectGood(await run(unit, startStop(0, 1)));
    expect(unit.stopped).toBe(true);
    release!();
  });

  it('a flush failure is reported (not IMMED) and the unit stays started', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    backend.flush = () => Promise.reject(new Error('io'));
    const logger = { debug: vi.fn(), warn: vi.fn(), error: vi.fn() };
    const { unit } = makeUnit({ backend, logger });
    expectCheck(await run(unit, startStop(0)), 'WRITE_ERROR');
    expect(unit.stopped).toBe(false);
    expectGood(await run(unit, startStop(0, 1)));
    await new Promise((r) => setTimeout(r, 0));
    expect(logger.error).toHaveBeenCalledOnce();
  });

  it('LOEJ with START=0 while removal is prevented: MEDIUM REMOVAL PREVENTED', async () => {
    const { unit } = makeUnit();
    expectGood(await run(unit, prevent(1), { nexus: 'a' }));
    expectCheck(await run(unit, startStop(0x02), { nexus: 'b' }), 'MEDIUM_REMOVAL_PREVENTED');
    expectGood(await run(unit, prevent(0), { nexus: 'a' }));
    expectGood(await run(unit, startStop(0x02), { nexus: 'b' }));
    expect(unit.stopped).toBe(true);
    expectGood(await run(unit, startStop(0x03)));
    expect(unit.stopped).toBe(false);
  });

  it('power conditions are not supported: INVALID FIELD IN CDB at the field', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, startStop(0x10)), 'INVALID_FIELD_IN_CDB', { byte: 4, bit: 7 });
    expectCheck(await run(unit, startStop(0x01, 0, 0x01)), 'INVALID_FIELD_IN_CDB', { byte: 3, bit: 3 });
  });

  it('round-trips its CDB', () => {
    const e = startStopUnitEntry;
    const f = {
      immediate: true,
      powerConditionModifier: 0,
      powerCondition: 0,
      noFlush: true,
      loadEject: true,
      start: false,
    };
    expect(e.decode(e.encode!(f))).toEqual(f);
  });
});

describe('PREVENT ALLOW MEDIUM REMOVAL (SBC-4 5.14)', () => {
  it('prevention is held per I_T nexus until that nexus allows', async () => {
    const { unit } = makeUnit();
    expectGood(await run(unit, prevent(1), { nexus: 'a' }));
    expectGood(await run(unit, prevent(1), { nexus: 'b' }));
    expectGood(await run(unit, prevent(0), { nexus: 'a' }));
    expect(unit.mediumRemovalPrevented).toBe(true);
    expectGood(await run(unit, prevent(0), { nexus: 'b' }));
    expect(unit.mediumRemovalPrevented).toBe(false);
  });

  it('PREVENT 10b/11b is INVALID FIELD IN CDB at byte 4 bit 1', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, prevent(2)), 'INVALID_FIELD_IN_CDB', { byte: 4, bit: 1 });
  });

  it('round-trips its CDB', () => {
    const e = preventAllowEntry;
    expect(e.decode(e.encode!({ prevent: 1 }))).toEqual({ prevent: 1 });
  });
});
