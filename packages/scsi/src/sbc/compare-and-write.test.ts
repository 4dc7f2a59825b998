import { describe, expect, it, vi } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { BackendIoError } from '../core/backend.js';
import { putBe16, putBe32, putBe64 } from '../core/bytes.js';
import { compareAndWriteCommands, firstDifference } from './compare-and-write.js';
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

const caw = (lba: number, blocks: number, flags = 0) => {
  const cdb = new Uint8Array(16);
  cdb[0] = 0x89;
  cdb[1] = flags;
  putBe64(cdb, 2, lba);
  cdb[13] = blocks;
  return cdb;
};
const write10 = (lba: number, blocks: number) => {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x2a;
  putBe32(cdb, 2, lba);
  putBe16(cdb, 7, blocks);
  return cdb;
};
const FUA = 0x08;

describe('COMPARE AND WRITE', () => {
  it('writes the second half when the first half matches the medium', async () => {
    const { unit, backend } = makeUnit();
    const old = filled(1024, 0x11);
    const next = filled(1024, (i) => i);
    expectGood(await run(unit, write10(10, 2), { dataOut: old }));
    expectGood(await run(unit, caw(10, 2), { dataOut: new Uint8Array([...old, ...next]) }));
    expect(readBack(backend, 10, 2)).toEqual(next);
  });

  it('a mismatch is MISCOMPARE DURING VERIFY OPERATION with INFORMATION = offset of the first differing byte', async () => {
    const { unit, backend } = makeUnit();
    const old = filled(1024, 0x11);
    expectGood(await run(unit, write10(10, 2), { dataOut: old }));
    const verify = old.slice();
    verify[700] = 0x12;
    verify[900] = 0x13;
    const sense = expectCheck(
      await run(unit, caw(10, 2), { dataOut: new Uint8Array([...verify, ...filled(1024, 0x99)]) }),
      'MISCOMPARE_DURING_VERIFY_OPERATION',
      { information: 700 },
    );
    expect(sense.information).toBeDefined(); // VALID bit set
    expect(readBack(backend, 10, 2)).toEqual(old);
  });

  it('NUMBER OF LOGICAL BLOCKS 0 is GOOD and touches nothing', async () => {
    const { unit } = makeUnit();
    expectGood(await run(unit, caw(0, 0)));
  });

  it('more blocks than MAXIMUM COMPARE AND WRITE LENGTH is INVALID FIELD IN CDB at byte 13', async () => {
    const { unit } = makeUnit({ config: { maxCompareAndWriteBlocks: 1 } });
    expectCheck(await run(unit, caw(0, 2), { dataOut: new Uint8Array(2048) }), 'INVALID_FIELD_IN_CDB', {
      byte: 13,
    });
  });

  it('over MAXIMUM COMPARE AND WRITE LENGTH is refused whatever the Data-Out holds, before anything is read', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const read = vi.spyOn(backend, 'read');
    const { unit } = makeUnit({ backend });
    // The default advertises 16 (VPD B0h byte 5); an initiator sending 17 blocks' worth, or only 1.
    for (const dataOut of [new Uint8Array(2 * 17 * 512), new Uint8Array(1024), undefined]) {
      expectCheck(await run(unit, caw(0, 17), { dataOut }), 'INVALID_FIELD_IN_CDB', { byte: 13 });
    }
    expectCheck(await run(unit, caw(0, 255), { dataOut: new Uint8Array(1024) }), 'INVALID_FIELD_IN_CDB', {
      byte: 13,
    });
    expect(read).not.toHaveBeenCalled();
    expectGood(await run(unit, caw(0, 16), { dataOut: new Uint8Array(2 * 16 * 512) }));
  });

  it('MAXIMUM COMPARE AND WRITE LENGTH 0: the command is not offered', async () => {
    const { unit } = makeUnit({ config: { maxCompareAndWriteBlocks: 0 } });
    expectCheck(
      await run(unit, caw(0, 1), { dataOut: new Uint8Array(1024) }),
      'INVALID_COMMAND_OPERATION_CODE',
    );
  });

  it('a range past the end is reported before a missing Data-Out', async () => {
    const { unit } = makeUnit({ blocks: 2048 });
    expectCheck(await run(unit, caw(2048, 1)), 'LBA_OUT_OF_RANGE');
  });

  it('a range past the end is LBA OUT OF RANGE', async () => {
    const { unit } = makeUnit({ blocks: 2048 });
    expectCheck(await run(unit, caw(2047, 2), { dataOut: new Uint8Array(2048) }), 'LBA_OUT_OF_RANGE');
  });

  it('reserved bytes 10-12 and WRPROTECT are INVALID FIELD IN CDB', async () => {
    const { unit } = makeUnit();
    const cdb = caw(0, 1);
    cdb[11] = 1;
    expectCheck(await run(unit, cdb, { dataOut: new Uint8Array(1024) }), 'INVALID_FIELD_IN_CDB', {
      byte: 11,
      bit: 0,
    });
    expectCheck(await run(unit, caw(0, 1, 0x20), { dataOut: new Uint8Array(1024) }), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 5,
    });
  });

  it('FUA, or WCE=0, writes with fua', async () => {
    const { backend, seen } = fuaRecorder(new MemoryBackend({ blockSize: 512, blockCount: 64 }));
    const { unit } = makeUnit({ backend });
    expectGood(await run(unit, caw(0, 1), { dataOut: new Uint8Array(1024) }));
    expectGood(await run(unit, caw(0, 1, FUA), { dataOut: new Uint8Array(1024) }));
    unit.modes.writeCacheEnabled = false;
    expectGood(await run(unit, caw(0, 1), { dataOut: new Uint8Array(1024) }));
    expect(seen).toEqual([false, true, true]);
  });

  it('a read failure is MEDIUM ERROR / UNRECOVERED READ ERROR with the LBA', async () => {
    const backend = {
      blockSize: 512,
      blockCount: 64,
      read: (lba: number) => Promise.reject(new BackendIoError('bad sector', lba)),
      write: () => {},
      flush: () => {},
    };
    const { unit } = makeUnit({ backend });
    expectCheck(await run(unit, caw(9, 1), { dataOut: new Uint8Array(1024) }), 'UNRECOVERED_READ_ERROR', {
      information: 9,
    });
  });

  it('is atomic: concurrent compare-and-writes on one block succeed exactly once per expected value', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    // A slow backend widens the window between the read and the write.
    const { unit: slowUnit } = makeUnit({ backend: slowBackend(backend) });
    const zero = new Uint8Array(512);
    const attempts = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        run(slowUnit, caw(3, 1), { dataOut: new Uint8Array([...zero, ...filled(512, i + 1)]) }),
      ),
    );
    expect(attempts.filter((a) => a.status === 0).length).toBe(1);
    expect(attempts.filter((a) => a.status === 2).length).toBe(7);
  });

  it('is atomic against WRITE: a write issued during the compare lands after it', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const gates: Array<() => void> = [];
    const backend = {
      blockSize: 512,
      blockCount: 64,
      read: async (lba: number, into: Uint8Array) => {
        await new Promise<void>((r) => gates.push(r));
        inner.read(lba, into);
      },
      write: inner.write.bind(inner),
      flush: () => {},
    };
    const { unit } = makeUnit({ backend });
    const compare = run(unit, caw(0, 1), {
      dataOut: new Uint8Array([...new Uint8Array(512), ...filled(512, 1)]),
    });
    await new Promise((r) => setTimeout(r, 5));
    const write = run(unit, write10(0, 1), { dataOut: filled(512, 2) });
    await new Promise((r) => setTimeout(r, 5));
    expect(readBack(inner, 0, 1).every((b) => b === 0)).toBe(true); // the WRITE waits for the lock
    gates.shift()!();
    expectGood(await compare);
    expectGood(await write);
    expect(readBack(inner, 0, 1).every((b) => b === 2)).toBe(true);
  });

  it('firstDifference finds the first differing byte, or the shorter length', () => {
    expect(firstDifference(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]))).toBe(-1);
    expect(firstDifference(new Uint8Array([1, 2, 3]), new Uint8Array([1, 5, 3]))).toBe(1);
    expect(firstDifference(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3]))).toBe(2);
  });

  it('CDB round-trips through decode/encode', () => {
    const entry = compareAndWriteCommands[0]!;
    const bytes = [...caw(0x0102030405, 7, 0x18)];
    expect([...entry.encode!(entry.decode(Uint8Array.from(bytes)))]).toEqual(bytes);
  });
});
