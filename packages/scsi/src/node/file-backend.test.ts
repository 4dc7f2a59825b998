import { mkdtemp, open, rm, stat, statfs, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendIoError } from '../core/backend.js';
import { ScsiStatus } from '../core/status.js';
import { LogicalUnit } from '../core/unit.js';
import { decodeSense } from '../sense/sense.js';
import { expectUnmappedReadsZero } from '../testing/harness.js';
import { FileBackend, FileBackendError } from './file-backend.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcmu-scsi-file-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FileBackend', () => {
  it('resize grows the file sparsely and serves the new blocks as zeros; a shrink keeps the bytes past the end', async () => {
    const path = join(dir, 'grow.img');
    const backend = await FileBackend.open(path, { blockSize: 512, create: { size: 512 * 8 } });
    await backend.write(7, new Uint8Array(512).fill(7), { fua: false });
    await backend.resize(32);
    expect(backend.blockCount).toBe(32);
    expect((await stat(path)).size).toBe(512 * 32);
    const tail = new Uint8Array(512).fill(1);
    await backend.read(31, tail);
    expect(tail.every((b) => b === 0)).toBe(true);
    await backend.resize(4);
    expect(backend.blockCount).toBe(4);
    expect((await stat(path)).size).toBe(512 * 32);
    await backend.resize(8);
    const kept = new Uint8Array(512);
    await backend.read(7, kept);
    expect(kept.every((b) => b === 7)).toBe(true);
    await expect(backend.resize(0)).rejects.toBeInstanceOf(FileBackendError);
    await backend.close();
    const readOnly = await FileBackend.open(path, { blockSize: 512, readOnly: true });
    await expect(readOnly.resize(64)).rejects.toBeInstanceOf(BackendIoError);
    await readOnly.close();
  });

  it('create makes a file of the given size; blocks read as zeros; writes read back', async () => {
    const path = join(dir, 'disk.img');
    const backend = await FileBackend.open(path, { blockSize: 512, create: { size: 512 * 64 } });
    expect(backend.blockCount).toBe(64);
    expect((await stat(path)).size).toBe(512 * 64);
    const zero = new Uint8Array(1024).fill(1);
    await backend.read(0, zero);
    expect(zero.every((b) => b === 0)).toBe(true);
    const data = Uint8Array.from({ length: 1024 }, (_, i) => i & 0xff);
    await backend.write(10, data, { fua: true });
    const back = new Uint8Array(1024);
    await backend.read(10, back);
    expect(back).toEqual(data);
    await backend.flush();
    await backend.close();
  });

  it('declares ignoresSignal: positional I/O cannot be cancelled, so READ/WRITE build no AbortController for it', async () => {
    const backend = await FileBackend.open(join(dir, 'signal.img'), {
      blockSize: 512,
      create: { size: 4096 },
    });
    expect(backend.ignoresSignal).toBe(true);
    await backend.close();
  });

  it('create on an existing file keeps it (and its size)', async () => {
    const path = join(dir, 'disk.img');
    await writeFile(path, new Uint8Array(4096).fill(3));
    const backend = await FileBackend.open(path, { blockSize: 512, create: { size: 512 * 64 } });
    expect(backend.blockCount).toBe(8);
    await backend.close();
  });

  it('discard without punchHole writes zeroes; with punchHole it calls it with byte offsets', async () => {
    const path = join(dir, 'disk.img');
    await writeFile(path, new Uint8Array(8192).fill(9));
    const plain = await FileBackend.open(path, { blockSize: 512 });
    expect(plain.unmappedReadsZero).toBe(true);
    await plain.discard(2, 3);
    const out = new Uint8Array(8192);
    await plain.read(0, out);
    expect(out.subarray(0, 1024).every((b) => b === 9)).toBe(true);
    expect(out.subarray(1024, 2560).every((b) => b === 0)).toBe(true);
    expect(out.subarray(2560).every((b) => b === 9)).toBe(true);
    await plain.close();
    const calls: number[][] = [];
    const punching = await FileBackend.open(path, {
      blockSize: 512,
      punchHole: (fd, offset, length) => calls.push([typeof fd === 'number' ? 1 : 0, offset, length]),
    });
    await punching.discard(4, 2);
    expect(calls).toEqual([[1, 2048, 1024]]);
    await punching.close();
    const failing = await FileBackend.open(path, {
      blockSize: 512,
      punchHole: () => {
        throw new Error('EOPNOTSUPP');
      },
    });
    await expect(failing.writeZeroes(1, 1)).rejects.toMatchObject({ name: 'BackendIoError', lba: 1 });
    await failing.close();
  });

  it('readOnly opens the file read-only and refuses writes with BackendIoError', async () => {
    const path = join(dir, 'disk.img');
    await writeFile(path, new Uint8Array(1024));
    const backend = await FileBackend.open(path, { blockSize: 512, readOnly: true });
    expect(backend.readOnly).toBe(true);
    await expect(backend.write(1, new Uint8Array(512), { fua: false })).rejects.toMatchObject({ lba: 1 });
    await backend.close();
  });

  it('reading past the end of a file that shrank is a BackendIoError with the LBA', async () => {
    const path = join(dir, 'disk.img');
    await writeFile(path, new Uint8Array(2048));
    const backend = await FileBackend.open(path, { blockSize: 512 });
    await writeFile(path, new Uint8Array(512));
    await expect(backend.read(0, new Uint8Array(2048))).rejects.toMatchObject({
      name: 'BackendIoError',
      lba: 1,
    });
    await backend.close();
  });

  it.each([
    ['a size that is not a multiple of the block size', 1000, 'SIZE_NOT_BLOCK_MULTIPLE'],
    ['an empty file', 0, 'EMPTY'],
  ])('%s is a FileBackendError', async (_name, size, code) => {
    const path = join(dir, 'disk.img');
    await writeFile(path, new Uint8Array(size));
    await expect(FileBackend.open(path, { blockSize: 512 })).rejects.toMatchObject({
      name: 'FileBackendError',
      code,
    });
  });

  it('a missing file, a directory and bad options are typed errors', async () => {
    await expect(FileBackend.open(join(dir, 'none'), { blockSize: 512 })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await expect(FileBackend.open(dir, { blockSize: 512 })).rejects.toBeInstanceOf(FileBackendError);
    await expect(FileBackend.open(join(dir, 'x'), { blockSize: 0 })).rejects.toMatchObject({
      code: 'INVALID_OPTIONS',
    });
    await expect(
      FileBackend.open(join(dir, 'x'), { blockSize: 512, create: { size: 100 } }),
    ).rejects.toMatchObject({
      code: 'INVALID_OPTIONS',
    });
    await expect(
      FileBackend.open(join(dir, 'x'), { blockSize: 512, readOnly: true, create: { size: 512 } }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
  });

  it('flush after close is a BackendIoError', async () => {
    const path = join(dir, 'disk.img');
    const backend = await FileBackend.open(path, { blockSize: 4096, create: { size: 4096 } });
    await backend.close();
    await expect(backend.flush()).rejects.toBeInstanceOf(BackendIoError);
    await expect(backend.write(0, new Uint8Array(4096), { fua: false })).rejects.toBeInstanceOf(
      BackendIoError,
    );
  });

  it('serves SCSI commands through a LogicalUnit (WRITE SAME then READ)', async () => {
    const backend = await FileBackend.open(join(dir, 'disk.img'), {
      blockSize: 512,
      create: { size: 512 * 16 },
    });
    const unit = new LogicalUnit({ backend, powerOnUnitAttention: false });
    const ws = Uint8Array.from([0x41, 0, 0, 0, 0, 2, 0, 0, 3, 0]);
    const write = await unit.execute({ cdb: ws, dataOut: new Uint8Array(512).fill(0x42) });
    expect(write.status).toBe(0);
    const read = await unit.execute({
      cdb: Uint8Array.from([0x28, 0, 0, 0, 0, 2, 0, 0, 3, 0]),
      dataInLength: 1536,
    });
    expect(read.dataIn?.every((b) => b === 0x42)).toBe(true);
    await backend.close();
  });

  it.each([
    'async',
    'sync',
  ] as const)("provisioningUsage (io '%s'): allocated bytes as mapped blocks, the filesystem's free space as shared", async (io) => {
    const path = join(dir, 'sparse.img');
    const backend = await FileBackend.open(path, { blockSize: 4096, create: { size: 4096 * 256 }, io });
    await backend.write(3, new Uint8Array(4096 * 2).fill(1), { fua: true });
    const pending = backend.provisioningUsage();
    expect(pending instanceof Promise).toBe(io === 'async');
    const usage = await pending;
    expect(usage.mappedBlocks).toBe(Math.ceil(((await stat(path)).blocks * 512) / 4096));
    expect(usage.mappedBlocks).toBeGreaterThanOrEqual(2);
    const fs = await statfs(dir);
    expect(usage.availableBlocks).toBeGreaterThan(0);
    expect(usage.availableBlocks).toBeLessThanOrEqual((fs.blocks * fs.bsize) / 4096);
    expect(usage.availableShared).toBe(true);
    // LOG SENSE Logical Block Provisioning: the available count's SCOPE is 10b (shared).
    const unit = new LogicalUnit({ backend, powerOnUnitAttention: false });
    const page = await unit.execute({
      cdb: Uint8Array.of(0x4d, 0, 0x4c, 0, 0, 0, 0, 0, 64, 0),
      dataInLength: 64,
    });
    expect([page.status, page.dataIn?.[12], page.dataIn?.[24]]).toEqual([0, 0x02, 0x01]);
    await backend.close();
  });

  for (const io of ['async', 'sync'] as const) {
    it(`WRITE SAME(16) UNMAP=1 reads back as zeros, as its LBPRZ says (io: '${io}', zeroes written)`, async () => {
      const backend = await FileBackend.open(join(dir, `unmap-${io}.img`), {
        blockSize: 512,
        create: { size: 512 * 64 },
        io,
      });
      try {
        await expectUnmappedReadsZero(backend, 3, 21);
      } finally {
        await backend.close();
      }
    });

    it(`PRE-FETCH reads the range: CONDITION MET, a block it cannot read is MEDIUM ERROR (io: '${io}')`, async () => {
      const path = join(dir, `prefetch-${io}.img`);
      const backend = await FileBackend.open(path, { blockSize: 512, create: { size: 512 * 4096 }, io });
      const unit = new LogicalUnit({ backend, powerOnUnitAttention: false });
      const prefetch16 = new Uint8Array(16);
      prefetch16[0] = 0x90;
      new DataView(prefetch16.buffer).setUint32(10, 4096);
      try {
        expect((await unit.execute({ cdb: prefetch16 })).status).toBe(ScsiStatus.CONDITION_MET);
        await truncate(path, 512 * 100); // the image shrank under the unit
        const failed = await unit.execute({ cdb: prefetch16 });
        expect(decodeSense(failed.sense!)).toMatchObject({ key: 3, asc: 0x11, information: 100 });
      } finally {
        await backend.close();
      }
    });
  }

  describe("io: 'sync'", () => {
    it('reads and writes on the calling thread: the bytes are in place when read() returns', async () => {
      const path = join(dir, 'disk.img');
      await writeFile(
        path,
        Uint8Array.from({ length: 4096 }, (_, i) => i % 251),
      );
      const backend = await FileBackend.open(path, { blockSize: 512, io: 'sync' });
      expect(backend.io).toBe('sync');
      const into = new Uint8Array(1024);
      const reading = backend.read(2, into);
      expect(into[0]).toBe(1024 % 251); // before any await
      await reading;
      const data = new Uint8Array(512).fill(0x5a);
      await backend.write(7, data, { fua: true }); // FUA: fdatasync on the threadpool
      const back = new Uint8Array(512);
      await backend.read(7, back);
      expect(back).toEqual(data);
      await backend.discard(7, 1); // zeroes written synchronously
      await backend.read(7, back);
      expect(back.every((b) => b === 0)).toBe(true);
      await backend.close();
    });

    it('failures throw BackendIoError with the LBA at once (the unit answers MEDIUM ERROR)', async () => {
      const path = join(dir, 'disk.img');
      await writeFile(path, new Uint8Array(2048));
      const readOnly = await FileBackend.open(path, { blockSize: 512, readOnly: true, io: 'sync' });
      expect(() => readOnly.write(1, new Uint8Array(512), { fua: false })).toThrow(
        expect.objectContaining({ name: 'BackendIoError', lba: 1 }),
      );
      await readOnly.close();
      const backend = await FileBackend.open(path, { blockSize: 512, io: 'sync' });
      await writeFile(path, new Uint8Array(512));
      expect(() => backend.read(0, new Uint8Array(2048))).toThrow(
        expect.objectContaining({ name: 'BackendIoError', lba: 1 }),
      );
      await backend.close();
      expect(() => backend.read(0, new Uint8Array(512))).toThrow(BackendIoError);
      expect(() => backend.write(0, new Uint8Array(512), { fua: false })).toThrow(BackendIoError);
    });

    it('answers synchronously: reads and writes return nothing, FUA returns the flush', async () => {
      const path = join(dir, 'sync.img');
      await writeFile(path, new Uint8Array(4096));
      const backend = await FileBackend.open(path, { blockSize: 512, io: 'sync' });
      expect(backend.directFile).toEqual({ fd: backend.fd });
      expect(backend.write(0, new Uint8Array(512).fill(9), { fua: false })).toBeUndefined();
      const into = new Uint8Array(512);
      expect(backend.read(0, into)).toBeUndefined();
      expect(into[0]).toBe(9);
      await expect(backend.write(1, new Uint8Array(512), { fua: true })).resolves.toBeUndefined();
      await backend.close();
      const async = await FileBackend.open(path, { blockSize: 512 });
      expect(async.directFile).toBeUndefined(); // threadpool I/O: not for a transport's own lane
      await async.close();
    });

    it('readv and writev move scatter lists, also across a short transfer', async () => {
      const path = join(dir, 'vector.img');
      await writeFile(path, new Uint8Array(8192));
      for (const io of ['sync', 'async'] as const) {
        const backend = await FileBackend.open(path, { blockSize: 512, io });
        const pieces = [
          new Uint8Array(1000).fill(1),
          new Uint8Array(24).fill(2),
          new Uint8Array(1024).fill(3),
        ];
        await backend.writev(2, pieces, { fua: false });
        const back = [new Uint8Array(100), new Uint8Array(1948)];
        await backend.readv(2, back);
        const joined = new Uint8Array([...back[0]!, ...back[1]!]);
        expect(joined).toEqual(new Uint8Array([...pieces[0]!, ...pieces[1]!, ...pieces[2]!]));
        await backend.close();
      }
    });

    it('latches an fdatasync failure: no later flush or FUA write reports success', async () => {
      const path = join(dir, 'latched.img');
      await writeFile(path, new Uint8Array(8192));
      const probe = await open(path, 'r');
      const prototype = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
      await probe.close();
      const real = prototype.datasync;
      for (const io of ['sync', 'async'] as const) {
        const backend = await FileBackend.open(path, { blockSize: 512, io });
        await backend.flush();
        prototype.datasync = () =>
          Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
        try {
          await expect(backend.flush()).rejects.toThrow(/fdatasync failed: EIO/);
        } finally {
          prototype.datasync = real;
        }
        // The kernel would now report success for the lost writeback: we do not.
        await expect(backend.flush()).rejects.toThrow(/an earlier fdatasync failed/);
        await expect(backend.write(0, new Uint8Array(512), { fua: true })).rejects.toBeInstanceOf(
          BackendIoError,
        );
        await backend.close();
        const fresh = await FileBackend.open(path, { blockSize: 512, io });
        await fresh.flush(); // a new open starts clean
        await fresh.close();
      }
    });

    it('an unknown io mode is INVALID_OPTIONS', async () => {
      await expect(
        FileBackend.open(join(dir, 'x'), { blockSize: 512, io: 'direct' as 'sync' }),
      ).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
    });
  });
});
