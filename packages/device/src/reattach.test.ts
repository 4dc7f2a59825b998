import { lstat, readlink, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExistsError } from '@tcmu/configfs';
import { MemoryBackend } from '@tcmu/scsi';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeviceSetupError, ReattachMismatchError } from './errors.js';
import { openDevice } from './open.js';
import type { OpenDeviceOptions } from './options.js';
import { createHarness, type Harness, rw10 } from './testing/harness.js';

const GOOD = 0x00;
const EARLIER_PID = 4242;

let harness: Harness;
beforeEach(async () => {
  harness = await createHarness();
  await harness.kernel.spawnProcess(EARLIER_PID);
});
afterEach(async () => {
  await harness.dispose();
});

const payload = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff);
/** One backend for both processes: the image they share. */
const image = () => new MemoryBackend({ blockSize: 512, blockCount: 4096 });

function options(backend: MemoryBackend, extra: Partial<OpenDeviceOptions> = {}): OpenDeviceOptions {
  return {
    name: 'kept',
    backend,
    nodeDir: harness.nodeDir,
    nodeKind: 'symlink',
    source: '/images/kept.img',
    platform: harness.platform,
    ...extra,
  };
}

/** An earlier process of ours served `kept`, wrote a block, and is gone: its objects stay. */
async function leftByEarlierProcess(backend: MemoryBackend) {
  const earlier = await openDevice(options(backend, { platform: harness.platformAs(EARLIER_PID) }));
  const written = await harness.submit(earlier, { cdb: rw10(0x2a, 8, 8), dataOut: payload });
  expect(written.status).toBe(GOOD);
  const left = { disk: earlier.diskPath, node: earlier.nodePath, backstore: earlier.backstorePath };
  await earlier.detach({ drainTimeoutMs: 100 });
  await harness.kernel.killProcess(EARLIER_PID);
  return left;
}

describe('reattach', () => {
  it('adopts a dead owner’s disk: same disk and node, no new LUN, block/reset/unblock, the data served', async () => {
    const backend = image();
    const left = await leftByEarlierProcess(backend);
    const journalBefore = harness.kernel.journal.length;
    const actionsBefore = harness.kernel.actions.length;

    const device = await openDevice(options(backend));
    expect(device.reattached).toBe(true);
    expect(device.diskPath).toBe(left.disk);
    expect(device.nodePath).toBe(left.node);
    expect(device.backstorePath).toBe(left.backstore);
    // tcmu-runner's reopen order; commands the old ring held came back BUSY (reset_ring=1)
    expect(harness.kernel.actions.slice(actionsBefore)).toEqual([
      'kept block_dev=1',
      'kept reset_ring=1',
      'kept block_dev=0',
    ]);
    const made = harness.kernel.journal.slice(journalBefore).filter((line) => line.startsWith('mkdir'));
    expect(made).toEqual([]); // no backstore, target, LUN or HBA made again
    const markers = await harness.platformAs(process.pid).findBackstore!('kept');
    expect(markers?.ownerPid).toBe(process.pid);

    const read = await harness.submit(device, { cdb: rw10(0x28, 8, 8), dataInLength: 4096 });
    expect(read.status).toBe(GOOD);
    expect(read.dataIn).toEqual(payload);

    const before = await harness.kernel.snapshot();
    expect(before.some((path) => path.startsWith('core/user_'))).toBe(true);
    await device.close();
    const after = await harness.kernel.snapshot();
    expect(after.filter((path) => path.startsWith('core/user_') || path.startsWith('loopback/naa.'))).toEqual(
      [],
    );
    await expect(lstat(left.node!)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a disk that serves other data, naming each difference, and changes nothing', async () => {
    const left = await leftByEarlierProcess(image());
    const snapshot = await harness.kernel.snapshot();
    const other = new MemoryBackend({ blockSize: 512, blockCount: 2048 });
    const error = await openDevice(options(other, { source: '/images/other.img' })).catch((e) => e);
    expect(error).toBeInstanceOf(DeviceSetupError);
    expect(error.step).toBe('backstore');
    expect(error.cause).toBeInstanceOf(ReattachMismatchError);
    expect(error.cause.differences).toEqual([
      'size 2097152 bytes there, 1048576 asked',
      'source "/images/kept.img" there, "/images/other.img" asked',
    ]);
    expect(await harness.kernel.snapshot()).toEqual(snapshot);
    expect((await lstat(left.node!)).isSymbolicLink()).toBe(true);
  });

  it('leaves a live owner’s disk alone: the name is in use', async () => {
    const backend = image();
    const live = await openDevice(options(backend, { platform: harness.platformAs(EARLIER_PID) }));
    const error = await openDevice(options(backend)).catch((e) => e);
    expect(error).toBeInstanceOf(DeviceSetupError);
    expect(error.cause).toBeInstanceOf(AlreadyExistsError);
    const still = await harness.submit(live, { cdb: rw10(0x28, 0, 1), dataInLength: 512 });
    expect(still.status).toBe(GOOD);
    await live.close();
  });

  it('reattach: false refuses a left-behind disk as before', async () => {
    await leftByEarlierProcess(image());
    const error = await openDevice(options(image(), { reattach: false })).catch((e) => e);
    expect(error.cause).toBeInstanceOf(AlreadyExistsError);
  });

  it('detach then open in the same process adopts it (an in-process restart)', async () => {
    const backend = image();
    const first = await openDevice(options(backend));
    const disk = first.diskPath;
    expect(await first.detach()).toEqual({ abandoned: 0 });
    const second = await openDevice(options(backend));
    expect(second.reattached).toBe(true);
    expect(second.diskPath).toBe(disk);
    await second.close();
    // once closed, the name is free: a fresh device, not a reattach
    const third = await openDevice(options(backend));
    expect(third.reattached).toBe(false);
    await third.close();
  });

  it('replaces our own stale node, but refuses to touch a foreign file at the node path', async () => {
    const backend = image();
    const left = await leftByEarlierProcess(backend);
    // Our node now points elsewhere (e.g. the disk came back under another name).
    const { unlink } = await import('node:fs/promises');
    await unlink(left.node!);
    await symlink('/dev/sd-gone', left.node!);
    const device = await openDevice(options(backend));
    const disk = device.diskPath;
    expect(await readlink(left.node!)).toBe(disk);
    await device.detach();

    // A node path the earlier owner did not record as its own (another node directory).
    const foreignDir = join(harness.nodeDir, 'other');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(foreignDir);
    await symlink('/dev/sd-foreign', join(foreignDir, 'kept'));
    const refused = await openDevice(options(backend, { nodeDir: foreignDir })).catch((e) => e);
    expect(refused).toBeInstanceOf(DeviceSetupError);
    expect(refused.step).toBe('node');
    expect(await readlink(join(foreignDir, 'kept'))).toBe('/dev/sd-foreign');
    // The failed adoption let the disk go, it did not remove it: a later open still adopts it.
    expect(await readlink(left.node!)).toBe(disk);
    const again = await openDevice(options(backend));
    expect(again.reattached).toBe(true);
    await again.close();
  });
});
