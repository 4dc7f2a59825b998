import { MemoryBackend, openDevice, registerDeviceMetrics } from '@tcmu/device';
import { createHarness, rw10 } from '@tcmu/device/testing';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from './args.js';
import { ExitCode } from './errors.js';
import { startMetricsServer } from './metrics.js';

const scrape = async (url: string) => {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  return response.text();
};
const value = (text: string, line: string) => {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
};

describe('serve --metrics', () => {
  it('parses HOST:PORT and needs the port', () => {
    expect(parseCommandLine(['serve', 'a.img', '--metrics', '[::1]:9464'])).toMatchObject({
      metrics: { host: '::1', port: 9464 },
    });
    expect(() => parseCommandLine(['serve', 'a.img', '--metrics', '127.0.0.1'])).toThrow(/needs a port/);
  });

  it('serves the device counters on /metrics while commands run, and moves with them', async () => {
    const harness = await createHarness();
    const device = await openDevice({
      name: 'vol0',
      backend: new MemoryBackend({ blockSize: 512, blockCount: 1024 }),
      platform: harness.platform,
    });
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, (registry) =>
      registerDeviceMetrics(registry, device),
    );
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const before = await scrape(server.url);
      expect(value(before, 'tcmu_device_state{device="vol0",state="ready"}')).toBe(1);
      expect(before).toContain('process_cpu_user_seconds_total');
      const reads = Array.from({ length: 10 }, (_, i) =>
        harness.submit(device, { cdb: rw10(0x28, i * 8, 8), dataInLength: 4096 }),
      );
      const during = scrape(server.url);
      await Promise.all(reads);
      await during;
      await harness.submit(device, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
      const after = await scrape(server.url);
      expect(value(after, 'tcmu_commands_total{device="vol0",group="read",status="good"}')).toBe(10);
      expect(value(after, 'tcmu_read_bytes_total{device="vol0"}')).toBe(10 * 4096);
      expect(value(after, 'tcmu_written_bytes_total{device="vol0"}')).toBe(512);
      expect(value(after, 'tcmu_command_latency_seconds_count{device="vol0"}')).toBe(11);
      expect((await fetch(server.url.replace('/metrics', '/'))).status).toBe(404);
      const taken = await startMetricsServer(
        { host: '127.0.0.1', port: Number(new URL(server.url).port) },
        () => {},
      ).catch((error: unknown) => error);
      expect(taken).toMatchObject({ exitCode: ExitCode.inUse });
    } finally {
      await server.close();
      await device.close();
      await harness.dispose();
    }
  });
});
