import { BackendWrapper, MemoryBackend } from '@tcmu/device';
import { describe, expect, it } from 'vitest';
import { prefixView } from './open-device.js';

describe('prefixView', () => {
  it('is the backend itself when nothing is cut', () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    expect(prefixView(inner, 16)).toBe(inner);
  });

  it('serves the first blocks of a bigger backend, delegating reads, writes and flushes', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    const view = prefixView(inner, 8);
    expect(view.blockCount).toBe(8);
    expect(view.blockSize).toBe(512);
    const data = new Uint8Array(1024).fill(7);
    await view.write(3, data, { fua: false });
    const back = new Uint8Array(1024);
    await inner.read(3, back);
    expect(back).toEqual(data);
    const again = new Uint8Array(1024);
    await view.read(3, again);
    expect(again).toEqual(data);
    await view.flush();
  });

  it('resizes the view within the image, and grows the image past its end', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    const view = prefixView(inner, 8);
    await view.resize!(12);
    expect([view.blockCount, inner.blockCount]).toEqual([12, 16]);
    await view.resize!(40);
    expect([view.blockCount, inner.blockCount]).toEqual([40, 40]);
  });

  it('keeps optional capabilities and clamps mapping status to the view', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const view = prefixView(inner, 32);
    expect(typeof view.discard).toBe('function');
    expect(typeof view.writeZeroes).toBe('function');
    const extent = await view.mappingStatus!(30, 100);
    expect(extent.lba).toBe(30);
    expect(extent.lba + extent.blocks).toBeLessThanOrEqual(32);
    // The whole image's allocation would overstate the view's.
    expect(typeof inner.provisioningUsage).toBe('function');
    expect('provisioningUsage' in view).toBe(false);
  });

  it('forwards every other flag, the direct file included (the native lane serves the prefix)', () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const withFile = new (class extends BackendWrapper {
      override get directFile() {
        return { fd: 9 };
      }
    })(inner);
    const view = prefixView(withFile, 32);
    expect(view.directFile).toEqual({ fd: 9 });
    expect(view.ignoresSignal).toBe(true);
    expect(view.unmappedReadsZero).toBe(true);
    expect(typeof view.readv).toBe('function');
    expect(typeof view.writev).toBe('function');
  });

  it('refuses a prefix longer than the backend', () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    expect(() => prefixView(inner, 17)).toThrow(RangeError);
    expect(() => prefixView(inner, 0)).toThrow(RangeError);
  });
});
