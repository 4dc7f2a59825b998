import { describe, expect, it } from 'vitest';
import { BackendIoError } from '../core/backend.js';
import { FaultInjectionBackend } from './fault-injection.js';
import { MemoryBackend, MemoryBackendConfigError } from './memory.js';
import { ReadOnlyBackend } from './read-only.js';

const bytes = (n: number, v: number) => new Uint8Array(n).fill(v);

describe('MemoryBackend', () => {
  it('resize: new blocks read as zeros; a shrink frees the cut-off chunks, so growing back reads zeros', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 8, chunkBlocks: 2 });
    m.write(6, new Uint8Array(1024).fill(9));
    m.resize(16);
    expect(m.blockCount).toBe(16);
    const block = new Uint8Array(512).fill(1);
    m.read(15, block);
    expect(block.every((b) => b === 0)).toBe(true);
    m.resize(5);
    expect(m.allocatedBytes).toBe(0);
    expect(() => m.read(5, block)).toThrow(BackendIoError);
    m.resize(8);
    m.read(6, block);
    expect(block.every((b) => b === 0)).toBe(true);
    expect(() => m.resize(0)).toThrow(MemoryBackendConfigError);
    expect(() => new MemoryBackend({ blockSize: 512, blockCount: 8, readOnly: true }).resize(9)).toThrow(
      BackendIoError,
    );
    expect(new ReadOnlyBackend(m).resize).toBeUndefined();
  });

  it('reads zeros before any write and allocates nothing', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 1000 });
    const out = bytes(1024, 9);
    m.read(10, out);
    expect(out.every((b) => b === 0)).toBe(true);
    expect(m.allocatedBytes).toBe(0);
    expect(m.unmappedReadsZero).toBe(true);
  });

  it('allocates whole chunks on first write and reads back across chunk boundaries', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 1000, chunkBlocks: 4 });
    const data = Uint8Array.from({ length: 3 * 512 }, (_, i) => i % 251);
    m.write(3, data, { fua: false });
    expect(m.allocatedBytes).toBe(2 * 4 * 512);
    const out = new Uint8Array(5 * 512);
    m.read(2, out);
    expect(out.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(out.subarray(512, 4 * 512)).toEqual(data);
    expect(out.subarray(4 * 512).every((b) => b === 0)).toBe(true);
  });

  it('the default chunk is 64 KiB', () => {
    expect(new MemoryBackend({ blockSize: 512, blockCount: 10 }).chunkBlocks).toBe(128);
    expect(new MemoryBackend({ blockSize: 1 << 20, blockCount: 10 }).chunkBlocks).toBe(1);
  });

  it('discard frees whole chunks and zeroes partial ones', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 64, chunkBlocks: 4 });
    m.write(0, bytes(16 * 512, 7), { fua: false });
    m.discard!(2, 8); // half of chunk 0, all of chunk 1, half of chunk 2
    expect(m.allocatedBytes).toBe(3 * 4 * 512);
    const out = new Uint8Array(16 * 512);
    m.read(0, out);
    for (let block = 0; block < 16; block++) {
      const expected = block >= 2 && block < 10 ? 0 : 7;
      expect(out[block * 512]).toBe(expected);
    }
  });

  it("the medium's last chunk, shorter than the others, is freed by a range that covers it", () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 10, chunkBlocks: 4 });
    m.write(0, bytes(10 * 512, 7), { fua: false });
    m.discard!(7, 1); // the tail of chunk 1: zeroed, kept
    expect(m.allocatedBytes).toBe(3 * 4 * 512);
    m.discard!(8, 2); // all of the two-block chunk 2
    expect(m.allocatedBytes).toBe(2 * 4 * 512);
    expect(m.mappingStatus!(8, 2)).toEqual({ lba: 8, blocks: 2, state: 'deallocated' });
  });

  it('provisioningUsage: mapped blocks are the allocated chunks (the last one may be short), the rest is available', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 10, chunkBlocks: 4 });
    expect(m.provisioningUsage!()).toEqual({ mappedBlocks: 0, availableBlocks: 10, availableShared: false });
    m.write(9, bytes(512, 1), { fua: false });
    expect(m.provisioningUsage!()).toEqual({ mappedBlocks: 2, availableBlocks: 8, availableShared: false });
    m.write(0, bytes(512, 1), { fua: false });
    expect(m.provisioningUsage!().mappedBlocks).toBe(6);
    expect(
      new MemoryBackend({ blockSize: 512, blockCount: 8, thin: false }).provisioningUsage,
    ).toBeUndefined();
  });

  it('writeZeroes behaves like discard for the data', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 64, chunkBlocks: 4, thin: false });
    m.write(0, bytes(8 * 512, 7), { fua: false });
    m.writeZeroes(0, 8);
    const out = new Uint8Array(8 * 512);
    m.read(0, out);
    expect(out.every((b) => b === 0)).toBe(true);
    expect(m.allocatedBytes).toBe(0);
  });

  it('mappingStatus reports extents of allocated and unallocated chunks, bounded by maxBlocks and the end', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 30, chunkBlocks: 4 });
    m.write(4, bytes(512 * 5, 1), { fua: false }); // chunks 1 and 2
    expect(m.mappingStatus!(0, 100)).toEqual({ lba: 0, blocks: 4, state: 'deallocated' });
    expect(m.mappingStatus!(5, 100)).toEqual({ lba: 5, blocks: 7, state: 'mapped' });
    expect(m.mappingStatus!(5, 2)).toEqual({ lba: 5, blocks: 2, state: 'mapped' });
    expect(m.mappingStatus!(12, 100)).toEqual({ lba: 12, blocks: 18, state: 'deallocated' });
  });

  it('thin: false offers neither discard nor mappingStatus', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 8, thin: false });
    expect(m.discard).toBeUndefined();
    expect(m.mappingStatus).toBeUndefined();
  });

  it('readOnly refuses writes, discards and write-zeroes', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 8, readOnly: true });
    expect(m.readOnly).toBe(true);
    expect(() => m.write(0, bytes(512, 1), { fua: false })).toThrow(BackendIoError);
    expect(() => m.discard!(0, 1)).toThrow(BackendIoError);
    expect(() => m.writeZeroes(0, 1)).toThrow(BackendIoError);
  });

  it('out-of-range or partial-block access is a BackendIoError with the LBA', () => {
    const m = new MemoryBackend({ blockSize: 512, blockCount: 8 });
    expect(() => m.read(7, new Uint8Array(1024))).toThrow(expect.objectContaining({ lba: 7 }));
    expect(() => m.read(0, new Uint8Array(100))).toThrow(BackendIoError);
    expect(() => m.write(-1, new Uint8Array(512), { fua: false })).toThrow(BackendIoError);
    expect(() => m.mappingStatus!(8, 1)).toThrow(BackendIoError);
  });

  it.each([
    [{ blockSize: 0, blockCount: 1 }],
    [{ blockSize: 512, blockCount: 0 }],
    [{ blockSize: 512, blockCount: 1.5 }],
    [{ blockSize: 512, blockCount: 8, chunkBlocks: 0 }],
  ])('impossible geometry %j is a MemoryBackendConfigError', (options) => {
    expect(() => new MemoryBackend(options)).toThrow(MemoryBackendConfigError);
  });
});

describe('ReadOnlyBackend', () => {
  it('reads through, reports readOnly, refuses writes and passes mapping status', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 8 });
    inner.write(1, bytes(512, 3), { fua: false });
    const ro = new ReadOnlyBackend(inner);
    expect(ro.readOnly).toBe(true);
    expect(ro.blockSize).toBe(512);
    expect(ro.blockCount).toBe(8);
    expect(ro.unmappedReadsZero).toBe(true);
    expect(ro.physicalBlockExponent).toBeUndefined();
    expect('discard' in ro).toBe(false);
    const out = new Uint8Array(512);
    await ro.read(1, out);
    expect(out[0]).toBe(3);
    expect(() => ro.write(2)).toThrow(expect.objectContaining({ lba: 2 }));
    expect(await ro.mappingStatus!(0, 8)).toEqual({ lba: 0, blocks: 8, state: 'mapped' });
    ro.flush();
    expect(
      new ReadOnlyBackend(new MemoryBackend({ blockSize: 512, blockCount: 8, thin: false })).mappingStatus,
    ).toBe(undefined);
  });
});

describe('FaultInjectionBackend', () => {
  it('fails reads of selected LBAs with BackendIoError carrying the first failing LBA', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    const f = new FaultInjectionBackend(inner, { failReads: [5, 6] });
    await f.read(0, new Uint8Array(5 * 512));
    await expect(f.read(3, new Uint8Array(4 * 512))).rejects.toMatchObject({
      name: 'BackendIoError',
      lba: 5,
    });
  });

  it('fails writes, write-zeroes and discards by predicate or set', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    const f = new FaultInjectionBackend(inner, { failWrites: (lba) => lba >= 10 });
    await f.write(0, new Uint8Array(512), { fua: true });
    await expect(f.write(9, new Uint8Array(1024), { fua: false })).rejects.toMatchObject({ lba: 10 });
    await expect(f.writeZeroes!(12, 1)).rejects.toMatchObject({ lba: 12 });
    await expect(f.discard!(15, 1)).rejects.toMatchObject({ lba: 15 });
    await f.writeZeroes!(0, 2);
    await f.discard!(0, 2);
    const g = new FaultInjectionBackend(inner, { failWrites: new Set([1]) });
    await expect(g.write(1, new Uint8Array(512), { fua: false })).rejects.toBeInstanceOf(BackendIoError);
  });

  it('fails flushes when asked and mirrors the inner geometry and abilities', async () => {
    const inner = new MemoryBackend({ blockSize: 4096, blockCount: 4, thin: false });
    const f = new FaultInjectionBackend(inner, { failFlush: true });
    await expect(f.flush()).rejects.toBeInstanceOf(BackendIoError);
    expect([f.blockSize, f.blockCount, f.readOnly, f.unmappedReadsZero, f.physicalBlockExponent]).toEqual([
      4096,
      4,
      false,
      true,
      undefined,
    ]);
    expect(f.discard).toBeUndefined();
    expect(f.mappingStatus).toBeUndefined();
    await new FaultInjectionBackend(inner).flush();
  });

  it('adds latency to every call, and an abort cuts the wait short', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 4 });
    const f = new FaultInjectionBackend(inner, { latencyMs: 5 });
    const pending = f.read(0, new Uint8Array(512));
    let settled = false;
    void pending.then(() => {
      settled = true;
    });
    await Promise.resolve();
    expect(settled).toBe(false);
    await pending;
    expect(await f.mappingStatus!(0, 4)).toEqual({ lba: 0, blocks: 4, state: 'deallocated' });
    const controller = new AbortController();
    const aborted = f.read(0, new Uint8Array(512), controller.signal);
    controller.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    await expect(f.read(0, new Uint8Array(512), controller.signal)).rejects.toThrow('stop');
  });
});
