/**
 * Testing a custom handler without a kernel: @tcmu/device/testing runs openDevice() on a fake
 * configfs/sysfs whose ring is @tcmu/ring's kernel simulator (the real addon on a memfd), so
 * each command below travels as a ring entry, through the device, to the handler and back.
 *
 *   npx vitest run examples/custom-handler.test.ts
 */
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Device } from '@tcmu/device';
import { createHarness, type Harness, rw10 } from '@tcmu/device/testing';
import { decodeSense, SenseReasons } from '@tcmu/scsi';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openCustomVolume } from './custom-handler.js';

let harness: Harness;
let device: Device;
beforeEach(async () => {
  harness = await createHarness();
  // A symlink node needs no root (a block node would need mknod).
  device = await openCustomVolume({
    platform: harness.platform,
    nodeDir: join(harness.nodeDir, 'myDevDirectory'),
    nodeKind: 'symlink',
  });
});
afterEach(async () => {
  await device.close();
  await harness.dispose();
});

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1');

describe('the go-tcmu README volume', () => {
  it('is myVolName on HBA 30, LUN 0, with its node in the directory given', async () => {
    expect(device.backstorePath).toMatch(/core\/user_30\/myVolName$/);
    expect(device.luns).toEqual([expect.objectContaining({ fabric: 'loopback', lun: 0 })]);
    expect(device.nodePath).toBe(join(harness.nodeDir, 'myDevDirectory', 'myVolName'));
    expect(await readlink(device.nodePath!)).toBe(device.diskPath);
  });

  it('answers READ(10) and READ(16) from the source, block by block', async () => {
    const read10 = await harness.submit(device, { cdb: rw10(0x28, 7, 2), dataInLength: 2048 });
    expect(read10.status).toBe(0);
    expect(text(read10.dataIn.subarray(0, 8))).toBe('block 7\n');
    expect(text(read10.dataIn.subarray(1024, 1032))).toBe('block 8\n');
    const read16 = Uint8Array.of(0x88, 0, 0, 0, 0, 0, 0, 0, 0x13, 0x87, 0, 0, 0, 1, 0, 0); // LBA 4999, 1 block
    const last = await harness.submit(device, { cdb: read16, dataInLength: 1024 });
    expect(text(last.dataIn.subarray(0, 11))).toBe('block 4999\n');
  });

  it('refuses a read past the end with LOGICAL BLOCK ADDRESS OUT OF RANGE', async () => {
    const result = await harness.submit(device, { cdb: rw10(0x28, 5119, 2), dataInLength: 2048 });
    expect(result.status).toBe(2);
    expect(decodeSense(result.sense)).toMatchObject(SenseReasons.LBA_OUT_OF_RANGE);
  });

  it('leaves the rest to the emulation: INQUIRY, READ CAPACITY, and writes refused', async () => {
    const serial = await harness.submit(device, {
      cdb: Uint8Array.of(0x12, 1, 0x80, 0, 255, 0),
      dataInLength: 255,
    });
    expect(text(serial.dataIn.subarray(4))).toBe(device.identity.serial);
    const capacity = await harness.submit(device, {
      cdb: Uint8Array.of(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0),
      dataInLength: 32,
    });
    const view = new DataView(capacity.dataIn.buffer, capacity.dataIn.byteOffset);
    expect([Number(view.getBigUint64(0)), view.getUint32(8)]).toEqual([5119, 1024]); // last LBA, block size
    const write = await harness.submit(device, {
      cdb: rw10(0x2a, 0, 1),
      dataOut: new Uint8Array(1024),
    });
    expect(write.status).toBe(2);
    expect(decodeSense(write.sense)).toMatchObject(SenseReasons.WRITE_PROTECTED);
  });
});
