import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogicalUnit } from '@tcmu/scsi';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openFileBackend, FileBackendError, MemoryBackend, ReadOnlyBackend } from './backends.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcmu-device-backends-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const allocatedBytes = async (path: string) => (await stat(path)).blocks * 512;

describe('FileBackend', () => {
  it('punches holes on discard through the ring addon (space comes back, reads return zeros)', async () => {
    const path = join(dir, 'image');
    const backend = await openFileBackend(path, { blockSize: 4096, create: { size: 4 << 20 } });
    try {
      expect(backend.blockCount).toBe(1024);
      await backend.write(0, new Uint8Array(1 << 20).fill(0x5a), { fua: true });
      expect(await allocatedBytes(path)).toBeGreaterThanOrEqual(1 << 20);
      await backend.discard?.(0, 256);
      expect(await allocatedBytes(path)).toBeLessThan(64 * 1024);
      const back = new Uint8Array(4096);
      await backend.read(10, back);
      expect(back.every((b) => b === 0)).toBe(true);
      expect((await stat(path)).size).toBe(4 << 20); // KEEP_SIZE
    } finally {
      await backend.close();
    }
  });

  for (const io of ['async', 'sync'] as const) {
    it(`WRITE SAME(16) UNMAP=1 punches the hole and READ returns zeros, as LBPRZ says (io: '${io}')`, async () => {
      const path = join(dir, `image-${io}`);
      const backend = await openFileBackend(path, { blockSize: 4096, create: { size: 4 << 20 }, io });
      const unit = new LogicalUnit({ backend, powerOnUnitAttention: false });
      const cdb = (opcode: number, lba: number, blocks: number, byte1 = 0) => {
        const c = new Uint8Array(16);
        c[0] = opcode;
        c[1] = byte1;
        new DataView(c.buffer).setBigUint64(2, BigInt(lba));
        new DataView(c.buffer).setUint32(10, blocks);
        return c;
      };
      try {
        const capacity = await unit.execute({
          cdb: Uint8Array.of(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0),
        });
        expect((capacity.dataIn?.[14] ?? 0) & 0x40).toBe(0x40); // LBPRZ
        const written = await unit.execute({
          cdb: cdb(0x8a, 0, 256),
          dataOut: new Uint8Array(1 << 20).fill(0x5a),
        });
        expect(written.status).toBe(0);
        // Blocks 1-254 of the 256 written: the hole starts and ends inside written data.
        const same = await unit.execute({ cdb: cdb(0x93, 1, 254, 0x08), dataOut: new Uint8Array(4096) });
        expect(same.status).toBe(0);
        const back = await unit.execute({ cdb: cdb(0x88, 0, 256), dataInLength: 1 << 20 });
        expect(back.dataIn!.subarray(4096, 255 * 4096).every((b) => b === 0)).toBe(true);
        expect(back.dataIn!.subarray(0, 4096).every((b) => b === 0x5a)).toBe(true);
        expect(back.dataIn!.subarray(255 * 4096).every((b) => b === 0x5a)).toBe(true);
        expect(await allocatedBytes(path)).toBeLessThan(64 * 1024); // the space came back
      } finally {
        await backend.close();
      }
    });
  }

  it('keeps an explicit punchHole override', async () => {
    const calls: number[][] = [];
    const backend = await openFileBackend(join(dir, 'image'), {
      blockSize: 512,
      create: { size: 1 << 20 },
      punchHole: (_fd, offset, length) => {
        calls.push([offset, length]);
      },
    });
    try {
      await backend.discard?.(8, 8);
      expect(calls).toEqual([[4096, 4096]]);
    } finally {
      await backend.close();
    }
  });
});

describe('FileBackend image lock', () => {
  it('one writer at a time, readers share, closing frees it (a killed server’s goes with its fds: the kernel restart tests)', async () => {
    const path = join(dir, 'locked');
    const writer = await openFileBackend(path, { blockSize: 512, create: { size: 1 << 20 } });
    const second = await openFileBackend(path, { blockSize: 512 }).catch((error) => error);
    expect(second).toBeInstanceOf(FileBackendError);
    expect(second.code).toBe('LOCKED');
    expect(second.message).toMatch(/in use by another server/);
    const reader = await openFileBackend(path, { blockSize: 512, readOnly: true }).catch((error) => error);
    expect(reader.code).toBe('LOCKED'); // a writer excludes readers too
    await writer.close();

    const readers = [
      await openFileBackend(path, { blockSize: 512, readOnly: true }),
      await openFileBackend(path, { blockSize: 512, readOnly: true }),
    ];
    const blockedWriter = await openFileBackend(path, { blockSize: 512 }).catch((error) => error);
    expect(blockedWriter.code).toBe('LOCKED');
    for (const r of readers) await r.close();
    const unlocked = await openFileBackend(path, { blockSize: 512, lock: false });
    const locked = await openFileBackend(path, { blockSize: 512 });
    await locked.close();
    await unlocked.close();
  });
});

describe('re-exported backends', () => {
  it('wraps a memory backend read-only', () => {
    const backend = new ReadOnlyBackend(new MemoryBackend({ blockSize: 512, blockCount: 8 }));
    expect(backend.readOnly).toBe(true);
    expect(backend.blockCount).toBe(8);
  });
});
