/**
 * Runs the examples: the SCSI one as a user would (node --import tsx), the device ones on
 * @tcmu/device/testing's simulated kernel (memory-disk.kernel.test.ts runs one on the real kernel).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Device } from '@tcmu/device';
import { createHarness, type Harness, rw10 } from '@tcmu/device/testing';
import { decodeSense, SenseReasons } from '@tcmu/scsi';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openMemoryDisk } from './memory-disk.js';
import { serveImage } from './read-only-image.js';

const here = fileURLToPath(new URL('.', import.meta.url));

describe('scsi-inquiry-read.ts', () => {
  it('prints the decoded INQUIRY, the block it reads back and the sense of a read past the end', async () => {
    // The workspace's sources (no build needed); a user's run resolves the built package.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--conditions=@tcmu/source', join(here, 'scsi-inquiry-read.ts')],
      { cwd: here },
    );
    expect(stdout.split('\n')).toEqual([
      'INQUIRY: GOOD, 96 bytes',
      '  peripheral device type 0 (0 = direct-access block device)',
      '  version 6 (6 = SPC-4), removable false',
      '  vendor "ACME", product "Example disk", revision "0042"',
      'READ(10) LBA 5, 1 block: GOOD, "hello from LBA 5"',
      'READ(10) LBA 2048: CHECK_CONDITION, ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE',
      '',
    ]);
  });
});

describe('on the simulated kernel', () => {
  let harness: Harness;
  let device: Device | undefined;
  beforeEach(async () => {
    harness = await createHarness();
  });
  afterEach(async () => {
    await device?.close();
    device = undefined;
    await harness.dispose();
  });

  it('memory-disk.ts: a 64 MiB disk that reads back what was written', async () => {
    device = await openMemoryDisk({ platform: harness.platform });
    expect(device.diskPath).toMatch(/\/dev\/sd[a-z]+$/);
    const capacity = await harness.submit(device, {
      cdb: Uint8Array.of(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0),
      dataInLength: 8,
    });
    expect([...capacity.dataIn]).toEqual([0, 0, 0x3f, 0xff, 0, 0, 0x10, 0]); // last LBA 16383, 4096-byte blocks
    const data = Uint8Array.from({ length: 8192 }, (_, i) => (i * 7) & 0xff);
    expect((await harness.submit(device, { cdb: rw10(0x2a, 100, 2), dataOut: data })).status).toBe(0);
    const read = await harness.submit(device, { cdb: rw10(0x28, 100, 2), dataInLength: 8192 });
    expect(read.dataIn).toEqual(data);
  });

  it('read-only-image.ts: reads the image, refuses writes, leaves the file as it was', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tcmu-example-image-'));
    try {
      const image = join(dir, 'disk.img');
      const bytes = Uint8Array.from({ length: 64 * 512 }, (_, i) => (i >> 9) + 1); // block n holds n + 1
      await writeFile(image, bytes);
      device = await serveImage(image, { platform: harness.platform, name: 'img0' });
      const read = await harness.submit(device, { cdb: rw10(0x28, 9, 1), dataInLength: 512 });
      expect(read.dataIn).toEqual(new Uint8Array(512).fill(10));
      const write = await harness.submit(device, { cdb: rw10(0x2a, 9, 1), dataOut: new Uint8Array(512) });
      expect(write.status).toBe(2);
      expect(decodeSense(write.sense)).toMatchObject(SenseReasons.WRITE_PROTECTED);
      // MODE SENSE(6): WP, bit 7 of the device-specific parameter, tells the initiator up front.
      const mode = await harness.submit(device, {
        cdb: Uint8Array.of(0x1a, 0, 0x3f, 0, 255, 0),
        dataInLength: 255,
      });
      expect(mode.dataIn[2]! & 0x80).toBe(0x80);
      expect(new Uint8Array(await readFile(image))).toEqual(bytes);
    } finally {
      await device?.close();
      device = undefined;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
