import {
  closeSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { NativeError } from './errors.js';
import { closeFd, loadAddon, mapFd, memfdCreate, mknod, punchHole, socketPair, zeroRange } from './native.js';

const dir = mkdtempSync(join(tmpdir(), 'tcmu-native-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('native errors', () => {
  it('carry code, errno, syscall and path', () => {
    const error = (() => {
      try {
        loadAddon().openUio(join(dir, 'no-such-uio'));
      } catch (caught) {
        return NativeError.from(caught);
      }
    })();
    expect(error).toBeInstanceOf(NativeError);
    expect(error).toMatchObject({
      code: 'ENOENT',
      errno: -2,
      syscall: 'open',
      path: join(dir, 'no-such-uio'),
    });
  });

  it('reject bad arguments with TypeError/RangeError instead of crashing', () => {
    const addon = loadAddon();
    expect(() => addon.kick('x' as unknown as number)).toThrow(TypeError);
    expect(() => new addon.Mapping(-1, 4096)).toThrow(/EBADF/);
    expect(() => new addon.Mapping(0, 3)).toThrow(RangeError);
  });
});

describe('mappings', () => {
  it('share memory between two maps of one memfd, with acquire/release word access', () => {
    const fd = memfdCreate('native-test');
    ftruncateSync(fd, 8192);
    const a = mapFd(fd, 8192);
    const b = mapFd(fd, 8192);
    new Uint8Array(a.buffer)[100] = 42;
    expect(new Uint8Array(b.buffer)[100]).toBe(42);
    a.storeRelease(64, 0xdeadbeef);
    expect(b.loadAcquire(64)).toBe(0xdeadbeef);
    expect(new DataView(b.buffer).getUint32(64, true)).toBe(0xdeadbeef);
    expect(() => a.loadAcquire(2)).toThrow(RangeError);
    expect(() => a.loadAcquire(8192)).toThrow(RangeError);
    const view = new Uint8Array(a.buffer, 0, 16);
    a.unmap();
    a.unmap(); // idempotent
    expect(view.length).toBe(0);
    expect(a.buffer.byteLength).toBe(0);
    expect(() => a.loadAcquire(0)).toThrow(/closed/);
    b.unmap();
    closeFd(fd);
  });
});

describe('event channel', () => {
  it('counts kicks, reports end of file, and polls through libuv', async () => {
    const [left, right] = socketPair();
    const addon = loadAddon();
    expect(addon.drainEvents(right)).toBe(0);
    expect(addon.kick(left)).toBe(true);
    expect(addon.kick(left)).toBe(true);
    expect(addon.drainEvents(right)).toBe(2);
    const seen: Array<[string | null, number]> = [];
    const poller = new addon.Poller(right, (error, events) => {
      seen.push([error ? (error as NativeError).code : null, events]);
    });
    addon.kick(left);
    await vi.waitFor(() => expect(seen).toEqual([[null, 1]]), { interval: 2 });
    closeFd(left);
    await vi.waitFor(() => expect(seen.at(-1)).toEqual(['EOF', 0]), { interval: 2 });
    poller.close();
    expect(addon.drainEvents(right)).toBe(-1);
    closeFd(right);
  });
});

describe('file helpers', () => {
  function fileWithData(name: string): number {
    const fd = openSync(join(dir, name), 'w+');
    writeSync(fd, new Uint8Array(16384).fill(0xaa));
    return fd;
  }

  function readBack(fd: number, offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    readSync(fd, out, 0, length, offset);
    return out;
  }

  it('punchHole deallocates a range and keeps the size', () => {
    const fd = fileWithData('punch');
    punchHole(fd, 4096, 8192);
    expect(statSync(join(dir, 'punch')).size).toBe(16384);
    expect(readBack(fd, 4096, 8192)).toEqual(new Uint8Array(8192));
    expect(readBack(fd, 0, 4096)).toEqual(new Uint8Array(4096).fill(0xaa));
    closeSync(fd);
  });

  it('zeroRange zeroes a range and keeps the size', () => {
    const fd = fileWithData('zero');
    zeroRange(fd, 100, 1000);
    expect(statSync(join(dir, 'zero')).size).toBe(16384);
    expect(readBack(fd, 100, 1000)).toEqual(new Uint8Array(1000));
    expect(readBack(fd, 1100, 10)).toEqual(new Uint8Array(10).fill(0xaa));
    closeSync(fd);
  });

  it('fallocate errors are NativeErrors', () => {
    expect(() => punchHole(-1, 0, 1)).toThrow(NativeError);
    expect(() => punchHole(0, -1, 1)).toThrow(RangeError);
  });

  it('mknod creates a block device node (root) or fails with EPERM', () => {
    const path = join(dir, 'loop-node');
    if (process.getuid?.() === 0) {
      mknod(path, 7, 3);
      const stat = statSync(path);
      expect(stat.isBlockDevice()).toBe(true);
      expect(stat.rdev).toBe((7 << 8) | 3);
      expect(() => mknod(path, 7, 3)).toThrow(expect.objectContaining({ code: 'EEXIST', syscall: 'mknod' }));
    } else {
      expect(() => mknod(path, 7, 3)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    }
  });
});
