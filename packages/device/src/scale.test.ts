import { readdirSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { OwnerRegistry } from '@tcmu/configfs';
import { MemoryBackend } from '@tcmu/scsi';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDevice } from './open.js';
import { createHarness, type Harness, rw10 } from './testing/harness.js';

// Issue 9: 32 devices opened and closed 100 times. TCMU_SCALE_ROUNDS lowers the rounds for a
// quick run; the default is the full count.
const DEVICES = 32;
const ROUNDS = Number(process.env.TCMU_SCALE_ROUNDS ?? 100);

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapAfterGc = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const openFds = () => readdirSync('/proc/self/fd').length;

let harness: Harness;
beforeEach(async () => {
  harness = await createHarness({ closeSimulatorWithRing: true });
});
afterEach(async () => {
  await harness.dispose();
});

describe('no leaks at scale', () => {
  it(`${DEVICES} devices opened, used and closed ${ROUNDS} times: fds, heap, configfs, markers and HBAs back to baseline`, async () => {
    const platform = harness.platform;
    const baseline = { snapshot: await harness.kernel.snapshot(), fds: openFds() };
    let heapAfterFirstRound = 0;
    const hbas = new Set<number>();
    for (let round = 0; round < ROUNDS; round++) {
      const devices = await Promise.all(
        Array.from({ length: DEVICES }, (_, i) =>
          openDevice({
            name: `scale${i}`,
            backend: new MemoryBackend({ blockSize: 512, blockCount: 256 }),
            platform,
            fabric: { type: 'none' },
          }),
        ),
      );
      for (const device of devices) hbas.add(device.hba!);
      const results = await Promise.all(
        devices.map((device) => harness.submit(device, { cdb: rw10(0x28, 0, 8), dataInLength: 4096 })),
      );
      expect(results.every((r) => r.status === 0)).toBe(true);
      await Promise.all(devices.map((device) => device.close()));
      // The fake kernel's own logs grow with every operation: not the device's heap.
      harness.kernel.journal.length = 0;
      harness.kernel.actions.length = 0;
      if (round === 0) heapAfterFirstRound = heapAfterGc();
    }
    const heapGrowth = heapAfterGc() - heapAfterFirstRound;
    console.log(
      `scale: ${DEVICES} devices x ${ROUNDS} rounds; HBA numbers used ${hbas.size}; heap growth after round 1 ${(heapGrowth / 1024).toFixed(0)} KiB; fds ${openFds()} (baseline ${baseline.fds})`,
    );
    expect(await harness.kernel.snapshot()).toEqual(baseline.snapshot); // configfs objects and HBA dirs
    expect(await platform.findBackstore!('scale0')).toBeUndefined();
    const markers = await new OwnerRegistry(harness.kernel, harness.kernel.roots, process.pid).list();
    expect(markers).toEqual([]);
    expect(hbas.size).toBeLessThanOrEqual(DEVICES); // numbers are reused, not consumed
    expect(openFds()).toBe(baseline.fds);
    // One device graph (unit, ring, metrics) is ~0.5 MB: a leak of one per cycle would be 1.6 GB.
    expect(heapGrowth).toBeLessThan(8 << 20);
  }, 600_000);
});
