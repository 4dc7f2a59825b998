import { MemoryBackend } from '@tcmu/scsi';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDevice } from './open.js';
import { registerDeviceMetrics } from './prometheus.js';
import { createHarness, type Harness, rw10 } from './testing/harness.js';

let harness: Harness;
beforeEach(async () => {
  harness = await createHarness();
});
afterEach(async () => {
  await harness.dispose();
});

/** The value of one sample line of a Prometheus text exposition ("name{labels} value"). */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('registerDeviceMetrics', () => {
  it('exposes commands, bytes, sense keys, latency, state and size on a prom-client Registry', async () => {
    const device = await openDevice({
      name: 'vol0',
      backend: new MemoryBackend({ blockSize: 512, blockCount: 2048 }),
      platform: harness.platform,
    });
    const registry = new Registry();
    registerDeviceMetrics(registry, device);
    try {
      const before = await registry.metrics();
      expect(sample(before, 'tcmu_device_state', 'device="vol0",state="ready"')).toBe(1);
      expect(sample(before, 'tcmu_device_size_bytes', 'device="vol0"')).toBe(2048 * 512);
      expect(
        sample(before, 'tcmu_commands_total', 'device="vol0",group="read",status="good"'),
      ).toBeUndefined();

      const data = new Uint8Array(4096).fill(3);
      expect((await harness.submit(device, { cdb: rw10(0x2a, 0, 8), dataOut: data })).status).toBe(0);
      for (let i = 0; i < 3; i++) await harness.submit(device, { cdb: rw10(0x28, 0, 8), dataInLength: 4096 });
      await harness.submit(device, { cdb: rw10(0x28, 2047, 2), dataInLength: 1024 }); // out of range
      await device.resize(4096);
      await harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 }); // CAPACITY DATA HAS CHANGED

      const after = await registry.metrics();
      expect(sample(after, 'tcmu_commands_total', 'device="vol0",group="read",status="good"')).toBe(3);
      expect(sample(after, 'tcmu_commands_total', 'device="vol0",group="write",status="good"')).toBe(1);
      expect(
        sample(after, 'tcmu_commands_total', 'device="vol0",group="read",status="check_condition"'),
      ).toBe(2);
      expect(sample(after, 'tcmu_read_bytes_total', 'device="vol0"')).toBe(3 * 4096);
      expect(sample(after, 'tcmu_written_bytes_total', 'device="vol0"')).toBe(4096);
      expect(sample(after, 'tcmu_check_conditions_total', 'device="vol0",sense_key="illegal_request"')).toBe(
        1,
      );
      expect(sample(after, 'tcmu_check_conditions_total', 'device="vol0",sense_key="unit_attention"')).toBe(
        1,
      );
      expect(sample(after, 'tcmu_command_latency_seconds_count', 'device="vol0"')).toBe(6);
      expect(sample(after, 'tcmu_command_latency_seconds_bucket', 'device="vol0",le="+Inf"')).toBe(6);
      expect(sample(after, 'tcmu_command_latency_seconds_bucket', 'device="vol0",le="10"')).toBe(6);
      expect(sample(after, 'tcmu_device_size_bytes', 'device="vol0"')).toBe(4096 * 512);
      expect(after).toContain('# TYPE tcmu_command_latency_seconds histogram');
    } finally {
      await device.close();
    }
    expect(sample(await registry.metrics(), 'tcmu_device_state', 'device="vol0",state="closed"')).toBe(1);
  });

  it('counts ring-full events: commands waiting in the ring while queueDepth are in flight', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Reads wait until released, so the first two hold the queue.
    class SlowBackend extends MemoryBackend {
      override async read(lba: number, into: Uint8Array): Promise<void> {
        await held;
        super.read(lba, into);
      }
    }
    const device = await openDevice({
      name: 'slow',
      backend: new SlowBackend({ blockSize: 512, blockCount: 64 }),
      platform: harness.platform,
      queueDepth: 2,
    });
    const registry = new Registry();
    registerDeviceMetrics(registry, device);
    try {
      expect(sample(await registry.metrics(), 'tcmu_ring_full_total', 'device="slow"')).toBe(0);
      const reads = Array.from({ length: 5 }, () =>
        harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 }),
      );
      while (device.stats().inFlight < 2) await new Promise((done) => setTimeout(done, 5));
      await new Promise((done) => setTimeout(done, 50)); // the other three's kicks arrive
      const full = sample(await registry.metrics(), 'tcmu_ring_full_total', 'device="slow"')!;
      expect(full).toBeGreaterThanOrEqual(1);
      expect(device.stats().inFlight).toBe(2);
      release();
      expect((await Promise.all(reads)).map((r) => r.status)).toEqual([0, 0, 0, 0, 0]);
      const drained = device.ringFullEvents;
      expect(drained).toBeGreaterThanOrEqual(full);
      await harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 });
      expect(device.ringFullEvents).toBe(drained); // nothing waits with the queue empty
    } finally {
      await device.close();
    }
  });
});
