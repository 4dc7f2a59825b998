import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { BackendIoError } from '../core/backend.js';
import { be32, be64, putBe16, putBe32, putBe64 } from '../core/bytes.js';
import { encodeUnmapParameterList, parseUnmapParameterList, provisioningCommands } from './provisioning.js';
import { expectUnmappedReadsZero } from '../testing/harness.js';
import { expectCheck, expectGood, filled, makeUnit, readBack, run } from './testing/harness.js';

const ws10 = (lba: number, blocks: number, flags = 0) => {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x41;
  cdb[1] = flags;
  putBe32(cdb, 2, lba);
  putBe16(cdb, 7, blocks);
  return cdb;
};
const ws16 = (lba: number, blocks: number, flags = 0) => {
  const cdb = new Uint8Array(16);
  cdb[0] = 0x93;
  cdb[1] = flags;
  putBe64(cdb, 2, lba);
  putBe32(cdb, 10, blocks);
  return cdb;
};
const ws32 = (lba: number, blocks: number, flags = 0) => {
  const cdb = new Uint8Array(32);
  cdb[0] = 0x7f;
  cdb[7] = 0x18;
  cdb[9] = 0x0d;
  cdb[10] = flags;
  putBe64(cdb, 12, lba);
  putBe32(cdb, 28, blocks);
  return cdb;
};
const UNMAP = 0x08;
const NDOB = 0x01;
const unmapCdb = (length: number, anchor = false) => [
  0x42,
  anchor ? 1 : 0,
  0,
  0,
  0,
  0,
  0,
  length >> 8,
  length & 0xff,
  0,
];
const lbaStatus = (lba: number, alloc: number) => {
  const cdb = new Uint8Array(16);
  cdb[0] = 0x9e;
  cdb[1] = 0x12;
  putBe64(cdb, 2, lba);
  putBe32(cdb, 10, alloc);
  return cdb;
};

describe('WRITE SAME', () => {
  it('WRITE SAME(10) writes the one block to every block of the range', async () => {
    const { unit, backend } = makeUnit();
    const block = filled(512, (i) => i * 7 + 1);
    expectGood(await run(unit, ws10(5, 3), { dataOut: block }));
    const back = readBack(backend, 4, 5);
    expect(back.subarray(0, 512).every((b) => b === 0)).toBe(true);
    for (let i = 1; i <= 3; i++) expect(back.subarray(i * 512, (i + 1) * 512)).toEqual(block);
    expect(back.subarray(4 * 512).every((b) => b === 0)).toBe(true);
  });

  it('WRITE SAME(16) and (32) write the block over a range larger than one chunk', async () => {
    const { unit, backend } = makeUnit({ blocks: 8192 });
    const block = filled(512, 0x5a);
    expectGood(await run(unit, ws16(100, 4000), { dataOut: block }));
    expect(readBack(backend, 100, 4000).every((b) => b === 0x5a)).toBe(true);
    expectGood(await run(unit, ws32(7000, 3), { dataOut: filled(512, 0x33) }));
    expect(readBack(backend, 7000, 3).every((b) => b === 0x33)).toBe(true);
  });

  it('a zero block with UNMAP deallocates (GET LBA STATUS then reports the blocks deallocated)', async () => {
    const { unit, backend } = makeUnit();
    expectGood(await run(unit, ws10(0, 64), { dataOut: filled(512, 1) }));
    expectGood(await run(unit, ws10(16, 16, UNMAP), { dataOut: new Uint8Array(512) }));
    expect(readBack(backend, 16, 16).every((b) => b === 0)).toBe(true);
    const status = await run(unit, lbaStatus(16, 24), { dataInLength: 24 });
    expect(be64(status.data, 8)).toBe(16);
    expect(be32(status.data, 16)).toBe(16);
    expect(status.data[20]).toBe(1);
  });

  it('UNMAP=1 with LBPRZ: written blocks read back as zeros, across partial allocation chunks (MemoryBackend)', async () => {
    await expectUnmappedReadsZero(
      new MemoryBackend({ blockSize: 512, blockCount: 256, chunkBlocks: 8 }),
      5,
      22,
    );
    await expectUnmappedReadsZero(new MemoryBackend({ blockSize: 4096, blockCount: 64 }), 3, 40);
  });

  it('a non-zero block with UNMAP is written, not deallocated (reads must return the data)', async () => {
    const { unit, backend } = makeUnit();
    expectGood(await run(unit, ws16(8, 8, UNMAP), { dataOut: filled(512, 9) }));
    expect(readBack(backend, 8, 8).every((b) => b === 9)).toBe(true);
  });

  it('NDOB writes zeroes without a Data-Out buffer; with UNMAP it deallocates', async () => {
    const { unit, backend } = makeUnit();
    expectGood(await run(unit, ws10(0, 32), { dataOut: filled(512, 4) }));
    expectGood(await run(unit, ws16(0, 8, NDOB)));
    expect(readBack(backend, 0, 8).every((b) => b === 0)).toBe(true);
    expectGood(await run(unit, ws32(8, 8, NDOB | UNMAP)));
    expect(
      readBack(backend, 0, 32)
        .subarray(0, 16 * 512)
        .every((b) => b === 0),
    ).toBe(true);
    expect((backend as MemoryBackend).mappingStatus!(8, 8).state).toBe('deallocated');
  });

  it('a zero block is written with writeZeroes when the backend is not thin', async () => {
    const { unit, backend } = makeUnit({ thin: false });
    expectGood(await run(unit, ws10(0, 4), { dataOut: filled(512, 3) }));
    expectGood(await run(unit, ws10(0, 4), { dataOut: new Uint8Array(512) }));
    expect(readBack(backend, 0, 4).every((b) => b === 0)).toBe(true);
  });

  it('UNMAP=1 without a discarding backend is INVALID FIELD IN CDB at the UNMAP bit (LBPWS=0)', async () => {
    const { unit, backend } = makeUnit({ thin: false });
    expectGood(await run(unit, ws10(0, 4), { dataOut: filled(512, 3) }));
    const zero = { dataOut: new Uint8Array(512) };
    expectCheck(await run(unit, ws10(0, 4, UNMAP), zero), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 3 });
    expectCheck(await run(unit, ws16(0, 4, UNMAP), zero), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 3 });
    expectCheck(await run(unit, ws32(0, 4, UNMAP), zero), 'INVALID_FIELD_IN_CDB', { byte: 10, bit: 3 });
    expect(readBack(backend, 0, 4).every((b) => b === 3)).toBe(true);
  });

  it('a zero block on a backend without writeZeroes or discard is written block by block', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64, thin: false });
    const plain = {
      blockSize: 512,
      blockCount: 64,
      read: inner.read.bind(inner),
      write: inner.write.bind(inner),
      flush: () => {},
    };
    const { unit } = makeUnit({ backend: plain, writeCacheEnabled: false });
    inner.write(0, filled(512 * 64, 8), { fua: false });
    expectGood(await run(unit, ws16(2, 60, NDOB)));
    expect(readBack(inner, 2, 60).every((b) => b === 0)).toBe(true);
    expect(readBack(inner, 0, 2).every((b) => b === 8)).toBe(true);
  });

  it('NUMBER OF LOGICAL BLOCKS 0 is INVALID FIELD IN CDB (WSNZ=1) at the count field', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, ws10(0, 0), { dataOut: new Uint8Array(512) }), 'INVALID_FIELD_IN_CDB', {
      byte: 7,
    });
    expectCheck(await run(unit, ws16(0, 0), { dataOut: new Uint8Array(512) }), 'INVALID_FIELD_IN_CDB', {
      byte: 10,
    });
    expectCheck(await run(unit, ws32(0, 0, NDOB)), 'INVALID_FIELD_IN_CDB', { byte: 28 });
  });

  it('more blocks than MAXIMUM WRITE SAME LENGTH is INVALID FIELD IN CDB', async () => {
    const { unit } = makeUnit({ config: { maxWriteSameBlocks: 16 } });
    expectGood(await run(unit, ws10(0, 16), { dataOut: new Uint8Array(512) }));
    expectCheck(await run(unit, ws10(0, 17), { dataOut: new Uint8Array(512) }), 'INVALID_FIELD_IN_CDB', {
      byte: 7,
    });
  });

  it('a range past the end, or wrapping, is LBA OUT OF RANGE', async () => {
    const { unit } = makeUnit({ blocks: 2048 });
    expectCheck(await run(unit, ws10(2047, 2), { dataOut: new Uint8Array(512) }), 'LBA_OUT_OF_RANGE');
    expectCheck(await run(unit, ws16(2 ** 53, 1, NDOB)), 'LBA_OUT_OF_RANGE');
    const wrap = ws16(0, 1, NDOB);
    wrap.fill(0xff, 2, 10);
    expectCheck(await run(unit, wrap), 'LBA_OUT_OF_RANGE');
  });

  it('ANCHOR is INVALID FIELD IN CDB (ANC_SUP=0)', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, ws16(0, 1, 0x10 | UNMAP | NDOB)), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 4,
    });
    expectCheck(await run(unit, ws32(0, 1, 0x10 | NDOB)), 'INVALID_FIELD_IN_CDB', { byte: 10, bit: 4 });
  });

  it('WRPROTECT or the obsolete PBDATA/LBDATA bits are INVALID FIELD IN CDB', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, ws10(0, 1, 0x20), { dataOut: new Uint8Array(512) }), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 5,
    });
    expectCheck(await run(unit, ws10(0, 1, 0x04), { dataOut: new Uint8Array(512) }), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 2,
    });
  });

  it('a read-only unit refuses WRITE SAME with WRITE PROTECTED', async () => {
    const { unit } = makeUnit({ readOnly: true });
    expectCheck(await run(unit, ws16(0, 1, NDOB)), 'WRITE_PROTECTED');
  });

  it('a backend write failure is MEDIUM ERROR / WRITE ERROR with the LBA', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const failing = {
      blockSize: 512,
      blockCount: 64,
      read: inner.read.bind(inner),
      write: (lba: number) => {
        throw new BackendIoError('disk on fire', lba + 1);
      },
      flush: () => {},
    };
    const { unit } = makeUnit({ backend: failing });
    expectCheck(await run(unit, ws10(5, 2), { dataOut: filled(512, 1) }), 'WRITE_ERROR', { information: 6 });
  });

  it('a write without space to map (ENOSPC under a sparse image) is DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const full = {
      blockSize: 512,
      blockCount: 64,
      read: inner.read.bind(inner),
      write: (lba: number) => {
        throw new BackendIoError('write failed: ENOSPC', lba, { spaceExhausted: true });
      },
      flush: () => {},
    };
    const { unit } = makeUnit({ backend: full });
    expectCheck(
      await run(unit, ws10(5, 2), { dataOut: filled(512, 1) }),
      'SPACE_ALLOCATION_FAILED_WRITE_PROTECT',
      {
        information: 5,
      },
    );
  });
});

describe('UNMAP', () => {
  it('deallocates every descriptor; unmapped blocks read as zeros', async () => {
    const { unit, backend } = makeUnit();
    expectGood(await run(unit, ws10(0, 100), { dataOut: filled(512, 0xee) }));
    const list = encodeUnmapParameterList([
      { lba: 0, blocks: 8 },
      { lba: 50, blocks: 10 },
    ]);
    expectGood(await run(unit, unmapCdb(list.length), { dataOut: list }));
    expect(readBack(backend, 0, 8).every((b) => b === 0)).toBe(true);
    expect(readBack(backend, 8, 42).every((b) => b === 0xee)).toBe(true);
    expect(readBack(backend, 50, 10).every((b) => b === 0)).toBe(true);
    expect(readBack(backend, 60, 40).every((b) => b === 0xee)).toBe(true);
  });

  it('parameter list length 0 is not an error', async () => {
    const { unit } = makeUnit();
    expectGood(await run(unit, unmapCdb(0)));
  });

  it('a parameter list shorter than the 8-byte header is PARAMETER LIST LENGTH ERROR', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, unmapCdb(6), { dataOut: new Uint8Array(6) }), 'PARAMETER_LIST_LENGTH_ERROR');
  });

  it('header lengths promising more than was transferred are PARAMETER LIST LENGTH ERROR', async () => {
    const { unit } = makeUnit();
    const list = encodeUnmapParameterList([{ lba: 0, blocks: 1 }]);
    putBe16(list, 2, 32);
    expectCheck(await run(unit, unmapCdb(list.length), { dataOut: list }), 'PARAMETER_LIST_LENGTH_ERROR');
    const list2 = encodeUnmapParameterList([{ lba: 0, blocks: 1 }]);
    putBe16(list2, 0, 40);
    expectCheck(await run(unit, unmapCdb(list2.length), { dataOut: list2 }), 'PARAMETER_LIST_LENGTH_ERROR');
  });

  it('UNMAP DATA LENGTH smaller than the descriptors it must cover is INVALID FIELD IN PARAMETER LIST at byte 0', async () => {
    const { unit } = makeUnit();
    const list = encodeUnmapParameterList([{ lba: 0, blocks: 1 }]);
    putBe16(list, 0, 6);
    expectCheck(
      await run(unit, unmapCdb(list.length), { dataOut: list }),
      'INVALID_FIELD_IN_PARAMETER_LIST',
      {
        inCdb: false,
        byte: 0,
      },
    );
  });

  it('an incomplete last descriptor (length not a multiple of 16) is ignored (SBC-4 5.32.2)', async () => {
    const { unit, backend } = makeUnit();
    expectGood(await run(unit, ws10(0, 20), { dataOut: filled(512, 2) }));
    const list = new Uint8Array(8 + 16 + 8);
    putBe16(list, 0, 30);
    putBe16(list, 2, 24);
    putBe64(list, 8, 0);
    putBe32(list, 16, 4);
    putBe64(list, 24, 10); // would-be second descriptor, cut short
    expectGood(await run(unit, unmapCdb(list.length), { dataOut: list }));
    expect(readBack(backend, 0, 4).every((b) => b === 0)).toBe(true);
    expect(readBack(backend, 4, 16).every((b) => b === 2)).toBe(true);
  });

  it('more descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT is INVALID FIELD IN PARAMETER LIST', async () => {
    const { unit } = makeUnit({ config: { maxUnmapDescriptors: 2 } });
    const list = encodeUnmapParameterList([
      { lba: 0, blocks: 1 },
      { lba: 2, blocks: 1 },
      { lba: 4, blocks: 1 },
    ]);
    expectCheck(
      await run(unit, unmapCdb(list.length), { dataOut: list }),
      'INVALID_FIELD_IN_PARAMETER_LIST',
      {
        inCdb: false,
        byte: 2,
      },
    );
  });

  it('more blocks in total than MAXIMUM UNMAP LBA COUNT is INVALID FIELD IN PARAMETER LIST at the count', async () => {
    const { unit } = makeUnit({ config: { maxUnmapBlocks: 10 } });
    const list = encodeUnmapParameterList([
      { lba: 0, blocks: 6 },
      { lba: 100, blocks: 5 },
    ]);
    expectCheck(
      await run(unit, unmapCdb(list.length), { dataOut: list }),
      'INVALID_FIELD_IN_PARAMETER_LIST',
      {
        inCdb: false,
        byte: 8 + 16 + 8,
      },
    );
  });

  it('a descriptor past the end of the medium is LBA OUT OF RANGE and nothing is unmapped', async () => {
    const { unit, backend } = makeUnit({ blocks: 2048 });
    expectGood(await run(unit, ws10(0, 8), { dataOut: filled(512, 7) }));
    const list = encodeUnmapParameterList([
      { lba: 0, blocks: 8 },
      { lba: 2040, blocks: 9 },
    ]);
    expectCheck(await run(unit, unmapCdb(list.length), { dataOut: list }), 'LBA_OUT_OF_RANGE');
    expect(readBack(backend, 0, 8).every((b) => b === 7)).toBe(true);
  });

  it('ANCHOR is INVALID FIELD IN CDB', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, unmapCdb(0, true)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 0 });
  });

  it('a backend without discard does not support UNMAP (INVALID COMMAND OPERATION CODE)', async () => {
    const { unit } = makeUnit({ thin: false });
    const list = encodeUnmapParameterList([{ lba: 0, blocks: 1 }]);
    expectCheck(await run(unit, unmapCdb(list.length), { dataOut: list }), 'INVALID_COMMAND_OPERATION_CODE');
  });

  it('with the write cache off the unmap is flushed (and a flush failure is WRITE ERROR)', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    let flushes = 0;
    const backend = {
      blockSize: 512,
      blockCount: 64,
      unmappedReadsZero: true,
      read: inner.read.bind(inner),
      write: inner.write.bind(inner),
      discard: inner.discard!,
      flush: () => {
        flushes++;
        if (flushes > 1) throw new Error('flush failed');
      },
    };
    const { unit } = makeUnit({ backend, writeCacheEnabled: false });
    const list = encodeUnmapParameterList([{ lba: 3, blocks: 1 }]);
    expectGood(await run(unit, unmapCdb(list.length), { dataOut: list }));
    expect(flushes).toBe(1);
    expectCheck(await run(unit, unmapCdb(list.length), { dataOut: list }), 'WRITE_ERROR');
  });

  it('parseUnmapParameterList skips zero-length descriptors', () => {
    const list = encodeUnmapParameterList([
      { lba: 1, blocks: 0 },
      { lba: 2, blocks: 3 },
    ]);
    expect(
      parseUnmapParameterList(list, { blockCount: 10, maxUnmapBlocks: 10, maxUnmapDescriptors: 4 }),
    ).toEqual([{ lba: 2, blocks: 3 }]);
  });
});

describe('GET LBA STATUS', () => {
  it('reports alternating mapped and deallocated extents from the starting LBA', async () => {
    const { unit } = makeUnit({ blocks: 64 });
    expectGood(await run(unit, ws10(8, 8), { dataOut: filled(512, 1) }));
    const out = await run(unit, lbaStatus(0, 1024), { dataInLength: 1024 });
    expectGood(out);
    const d = out.data;
    expect(be32(d, 0)).toBe(d.length - 4);
    const extents = [];
    for (let at = 8; at < d.length; at += 16) extents.push([be64(d, at), be32(d, at + 8), d[at + 12]]);
    expect(extents).toEqual([
      [0, 8, 1],
      [8, 8, 0],
      [16, 48, 1],
    ]);
  });

  it('a backend without mapping status reports everything mapped', async () => {
    const { unit } = makeUnit({ thin: false, blocks: 100 });
    const out = await run(unit, lbaStatus(40, 24), { dataInLength: 24 });
    expect(be32(out.data, 0)).toBe(20);
    expect(be64(out.data, 8)).toBe(40);
    expect(be32(out.data, 16)).toBe(60);
    expect(out.data[20]).toBe(0);
  });

  it('the number of descriptors follows the allocation length (at least one)', async () => {
    const { unit } = makeUnit({ blocks: 64 });
    expectGood(await run(unit, ws10(8, 8), { dataOut: filled(512, 1) }));
    const one = await run(unit, lbaStatus(0, 24), { dataInLength: 24 });
    expect(be32(one.data, 0)).toBe(20);
    const truncated = await run(unit, lbaStatus(0, 16), { dataInLength: 16 });
    expect(truncated.data.length).toBe(16);
    expect(be32(truncated.data, 0)).toBe(20);
  });

  it('a starting LBA past the last block is LBA OUT OF RANGE', async () => {
    const { unit } = makeUnit({ blocks: 64 });
    expectCheck(await run(unit, lbaStatus(64, 24), { dataInLength: 24 }), 'LBA_OUT_OF_RANGE');
  });

  it('a failing mapping query is MEDIUM ERROR with the LBA; a zero-length extent does not loop', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    let calls = 0;
    const backend = {
      blockSize: 512,
      blockCount: 64,
      read: inner.read.bind(inner),
      write: inner.write.bind(inner),
      flush: () => {},
      mappingStatus: (lba: number) => {
        calls++;
        if (lba === 5) throw new Error('boom');
        return { lba, blocks: 0, state: 'anchored' as const };
      },
    };
    const { unit } = makeUnit({ backend });
    const two = await run(unit, lbaStatus(0, 40), { dataInLength: 40 });
    expect(two.data[20]).toBe(2);
    expect(be32(two.data, 16)).toBe(1);
    expect(calls).toBe(2);
    expectCheck(await run(unit, lbaStatus(5, 24), { dataInLength: 24 }), 'UNRECOVERED_READ_ERROR', {
      information: 5,
    });
  });
});

describe('provisioning CDB codecs round-trip', () => {
  const byName = new Map(provisioningCommands.map((e) => [e.name, e]));
  it.each([
    ['WRITE SAME(10)', [...ws10(0x01020304, 0x0506, UNMAP)]],
    ['WRITE SAME(16)', [...ws16(0x0102030405, 0x06070809, UNMAP | NDOB)]],
    ['WRITE SAME(32)', [...ws32(0x0102030405, 0x06070809, NDOB)]],
    ['UNMAP', unmapCdb(0x123)],
    ['GET LBA STATUS', [...lbaStatus(0x0a0b0c0d0e, 0x10203040)]],
  ])('%s', (name, bytes) => {
    const entry = byName.get(name)!;
    expect([...entry.encode!(entry.decode(Uint8Array.from(bytes)))]).toEqual(bytes);
  });
});
