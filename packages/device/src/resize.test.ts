import { readFile } from 'node:fs/promises';
import { BackendWrapper, decodeSense, MemoryBackend } from '@tcmu/scsi';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeviceResizeError } from './errors.js';
import { openDevice } from './open.js';
import type { OpenDeviceOptions } from './options.js';
import { createHarness, type Harness, rw10 } from './testing/harness.js';

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;
const readCapacity16 = Uint8Array.of(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);

let harness: Harness;
beforeEach(async () => {
  harness = await createHarness();
});
afterEach(async () => {
  await harness.dispose();
});

const open = (options: Partial<OpenDeviceOptions> = {}) =>
  openDevice({
    name: 'vol0',
    backend: new MemoryBackend({ blockSize: 512, blockCount: 2048 }),
    platform: harness.platform,
    ...options,
  } as OpenDeviceOptions);

/** READ CAPACITY(16)'s number of blocks (last LBA + 1). */
async function capacity(device: Awaited<ReturnType<typeof open>>): Promise<number> {
  const result = await harness.submit(device, { cdb: readCapacity16, dataInLength: 32 });
  expect(result.status).toBe(GOOD);
  return Number(new DataView(result.dataIn.buffer, result.dataIn.byteOffset).getBigUint64(0)) + 1;
}

describe('Device.resize', () => {
  it('grows: READ CAPACITY answers the new size after one CAPACITY DATA HAS CHANGED, the kernel and the disk follow', async () => {
    const device = await open();
    try {
      expect(await capacity(device)).toBe(2048);
      const resized: number[][] = [];
      device.on('resized', (blocks, previous) => resized.push([blocks, previous]));
      await device.resize(4096);
      expect(device.blockCount).toBe(4096);
      expect(resized).toEqual([[4096, 2048]]);

      const attention = await harness.submit(device, { cdb: readCapacity16, dataInLength: 32 });
      expect(attention.status).toBe(CHECK_CONDITION);
      expect(decodeSense(attention.sense)).toMatchObject({ key: 0x06, asc: 0x2a, ascq: 0x09 });
      expect(await capacity(device)).toBe(4096);
      expect((await harness.submit(device, { cdb: rw10(0x28, 4000, 8), dataInLength: 4096 })).status).toBe(
        GOOD,
      );

      // No netlink listener in the fake (as without tcmu-runner): attrib/dev_size gives ESRCH, control is used.
      const attrib = await readFile(`${device.backstorePath}/attrib/dev_size`, 'utf8');
      expect(attrib.trim()).toBe(String(4096 * 512));
      expect(harness.kernel.rescans).toHaveLength(1);
      expect(harness.kernel.journal.some((line) => line.endsWith(`control=dev_size=${4096 * 512}`))).toBe(
        true,
      );
    } finally {
      await device.close();
    }
  });

  it('refuses a shrink without force, and keeps serving the old size', async () => {
    const device = await open();
    try {
      const refused = await device.resize(1024).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(DeviceResizeError);
      expect(refused).toMatchObject({ reason: 'shrink' });
      expect(await capacity(device)).toBe(2048);

      await device.resize(1024, { force: true });
      await harness.submit(device, { cdb: readCapacity16, dataInLength: 32 }); // the unit attention
      expect(await capacity(device)).toBe(1024);
      const past = await harness.submit(device, { cdb: rw10(0x28, 1024, 1), dataInLength: 512 });
      expect(decodeSense(past.sense)).toMatchObject({ key: 0x05, asc: 0x21 });
    } finally {
      await device.close();
    }
  });

  it('uses attrib/dev_size when a netlink listener takes the RECONFIG event', async () => {
    harness.kernel.netlinkListener = true;
    const device = await open();
    try {
      await device.resize(3000);
      expect(harness.kernel.journal.some((line) => line.endsWith(`attrib/dev_size=${3000 * 512}`))).toBe(
        true,
      );
      expect(harness.kernel.journal.some((line) => line.includes('control=dev_size='))).toBe(false);
    } finally {
      await device.close();
    }
  });

  it('follows a backend resized underneath (an RBD image another client grew): the kernel and READ CAPACITY follow', async () => {
    // No resize() of its own: the size changes from outside, as librbd's header watch reports it.
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 2048 });
    const external = new BackendWrapper(inner, ['resize']);
    const device = await open({ backend: external });
    try {
      expect(await capacity(device)).toBe(2048);
      await inner.resize(3072);
      await device.resize(3072);
      expect(device.blockCount).toBe(3072);
      const attention = await harness.submit(device, { cdb: readCapacity16, dataInLength: 32 });
      expect(decodeSense(attention.sense)).toMatchObject({ key: 0x06, asc: 0x2a, ascq: 0x09 });
      expect(await capacity(device)).toBe(3072);
      const attrib = await readFile(`${device.backstorePath}/attrib/dev_size`, 'utf8');
      expect(attrib.trim()).toBe(String(3072 * 512));
      // A size the backend does not have is still refused without resize().
      await expect(device.resize(4096)).rejects.toMatchObject({ reason: 'unsupported' });
    } finally {
      await device.close();
    }
  });

  it('refuses a backend without resize(), bad sizes and a closed device', async () => {
    const fixed = new BackendWrapper(new MemoryBackend({ blockSize: 512, blockCount: 64 }), ['resize']);
    const device = await open({ backend: fixed });
    await expect(device.resize(128)).rejects.toMatchObject({ reason: 'unsupported' });
    await device.close();
    const other = await open({ name: 'vol1' });
    await expect(other.resize(1.5)).rejects.toMatchObject({ reason: 'invalid' });
    await other.close();
    await expect(other.resize(4096)).rejects.toMatchObject({ reason: 'state' });
  });
});
