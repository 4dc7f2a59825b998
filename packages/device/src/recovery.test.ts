import { ABI, CorruptRingError } from '@tcmu/ring';
import { MemoryBackend } from '@tcmu/scsi';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FaultInjectionBackend } from './index.js';
import { openDevice } from './open.js';
import { createHarness, type Harness, rw10 } from './testing/harness.js';

const GOOD = 0x00;
const BUSY = 0x08;

let harness: Harness;
beforeEach(async () => {
  harness = await createHarness();
});
afterEach(async () => {
  await harness.dispose();
});

/** A command entry whose length runs past cmd_head: the walk must refuse it. */
function corruptEntry(): Uint8Array {
  const bytes = new Uint8Array(ABI.cmdEntrySize);
  new DataView(bytes.buffer).setUint32(ABI.header.lenOp, 4096 | ABI.op.cmd, true);
  return bytes;
}

describe('a corrupt ring', () => {
  it('is reported (error event, state), reset in the kernel and served again', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 2048 });
    const device = await openDevice({ name: 'rec', backend, platform: harness.platform });
    const errors: Error[] = [];
    device.on('error', (error) => errors.push(error));
    const recovered = new Promise<Error>((resolve) => device.once('recovered', resolve));
    const payload = Uint8Array.from({ length: 512 }, (_, i) => i & 0xff);
    expect((await harness.submit(device, { cdb: rw10(0x2a, 4, 1), dataOut: payload })).status).toBe(GOOD);
    const actionsBefore = harness.kernel.actions.length;

    harness.simulator(device).injectRaw(corruptEntry(), ABI.cmdEntrySize);
    expect(await recovered).toBeInstanceOf(CorruptRingError);
    expect(errors[0]).toBeInstanceOf(CorruptRingError);
    expect(device.state).toBe('ready');
    expect(device.recoveries).toBe(1);
    expect(harness.kernel.actions.slice(actionsBefore)).toEqual([
      'rec block_dev=1',
      'rec reset_ring=1',
      'rec block_dev=0',
    ]);
    // Served from the start of the reset ring; the data is the backend's.
    const read = await harness.submit(device, { cdb: rw10(0x28, 4, 1), dataInLength: 512 });
    expect(read.status).toBe(GOOD);
    expect(read.dataIn).toEqual(payload);
    for (let i = 0; i < 50; i++) {
      expect((await harness.submit(device, { cdb: rw10(0x28, i, 1), dataInLength: 512 })).status).toBe(GOOD);
    }
    await device.close();
  });

  it('waits for a command still running, then resets; the read answered before the reset', async () => {
    const backend = new FaultInjectionBackend(new MemoryBackend({ blockSize: 512, blockCount: 2048 }), {
      latencyMs: 300,
    });
    const device = await openDevice({ name: 'rec2', backend, platform: harness.platform });
    device.on('error', () => {});
    const recovered = new Promise<Error>((resolve) => device.once('recovered', resolve));
    const slow = harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    harness.simulator(device).injectRaw(corruptEntry(), ABI.cmdEntrySize);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(device.state).toBe('recovering'); // the read is still running: no reset under it
    await recovered;
    expect((await slow).status).toBe(GOOD);
    expect((await harness.submit(device, { cdb: rw10(0x28, 1, 1), dataInLength: 512 })).status).toBe(GOOD);
    await device.close();
  });

  it('a command queued behind the corrupt entry comes back BUSY for the initiator to retry, never replayed', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 2048 });
    const device = await openDevice({ name: 'rec3', backend, platform: harness.platform });
    device.on('error', () => {});
    const recovered = new Promise<Error>((resolve) => device.once('recovered', resolve));
    harness.simulator(device).injectRaw(corruptEntry(), ABI.cmdEntrySize);
    // In the ring after the corrupt entry, before the consumer's walk stops at it.
    const stuck = harness.submit(device, { cdb: rw10(0x2a, 9, 1), dataOut: new Uint8Array(512).fill(7) });
    await recovered;
    expect((await stuck).status).toBe(BUSY);
    const read = await harness.submit(device, { cdb: rw10(0x28, 9, 1), dataInLength: 512 });
    expect(read.dataIn).toEqual(new Uint8Array(512)); // not written: the initiator retries it
    await device.close();
  });
});
