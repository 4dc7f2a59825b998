/**
 * Random CDBs through the real kernel (issue 9 item 7), a smaller count than the job
 * `pnpm fuzz:kernel` (10,000): sd/sg, LIO's core and the ring in front of our emulation.
 */
import { openDevice } from '@tcmu/device';
import { MemoryBackend } from '@tcmu/scsi';
import { expect, it } from 'vitest';
import { checkDiskAnswers, fuzzKernel } from '../../tools/fuzz/kernel.js';

it('1,500 random CDBs over SG_IO: no hang, SAM statuses with sense, the disk answers afterwards', async () => {
  const device = await openDevice({
    name: 'fuzz-kernel',
    backend: new MemoryBackend({ blockSize: 512, blockCount: 32_768 }),
  });
  try {
    const counts = await fuzzKernel(device.diskPath!, 1500, 7);
    expect(counts.commands).toBe(1500);
    expect(counts.hangs).toBe(0);
    // Not vacuous: most crossed the kernel to an answer, good ones and refusals both.
    expect(counts.good).toBeGreaterThan(100);
    expect(counts.checkCondition).toBeGreaterThan(500);
    expect(counts.refusedByKernel + counts.hostErrors).toBeLessThan(counts.commands / 2);
    await checkDiskAnswers(device.diskPath!);
    expect(device.stats().commands).toBeGreaterThan(counts.good);
  } finally {
    await device.close({ drainTimeoutMs: 10_000 });
  }
}, 600_000);
