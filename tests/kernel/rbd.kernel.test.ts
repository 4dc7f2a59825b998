/**
 * A Ceph RBD image as a real /dev/sdX (in the VM): a one-node cluster on the guest's loopback
 * (tools/ceph/one-node.sh, its data on the guest's tmpfs), @tcmu/rbd's backend behind
 * @tcmu/device on target_core_user + tcm_loop. fio with verification, mkfs.ext4 and fsck through
 * the kernel, then the image read back by another client (`rbd export`) equals the disk; and
 * an OSD that stops answering for longer than the op timeout: BUSY, retried by the kernel,
 * until the read completes with the data.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type CommandEvent, type Device, openDevice } from '@tcmu/device';
import { installRbdCommands, RbdBackend } from '@tcmu/rbd';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../../tools/ceph/cluster.js';
import { ok, sh } from './commands.js';

let cluster: TestCluster;
let backend: RbdBackend;
let device: Device;

beforeAll(async () => {
  cluster = await startCluster('vm-rbd', 30, { dir: '/tmp/ceph-vm-rbd' });
  console.log(`one-node Ceph cluster up in the VM in ${(cluster.startMs / 1000).toFixed(1)} s`);
  backend = await RbdBackend.open({
    ...cluster.openOptions,
    exclusive: true,
  });
  device = await openDevice({ name: 'e2e-rbd', backend, nodeDir: '/dev/tcmu-e2e' });
  installRbdCommands(device.unit!, backend);
}, 400_000);
afterAll(async () => {
  await device?.close();
  await backend?.close();
  await cluster?.wipe();
}, 120_000);

const sha256 = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

describe('an RBD image as /dev/sdX', () => {
  it('has the image’s size; fio --verify passes through the ring and librbd', async () => {
    const disk = device.diskPath!;
    expect((await ok('blockdev', ['--getsize64', disk])).trim()).toBe(String(64 << 20));
    await ok(
      'fio',
      [
        '--name=rbd-verify',
        `--filename=${disk}`,
        '--rw=randwrite',
        '--bssplit=4k/50:64k/30:256k/20',
        '--iodepth=16',
        '--direct=1',
        '--ioengine=libaio',
        '--size=16M',
        '--verify=crc32c',
        '--verify_fatal=1',
        '--do_verify=1',
        '--randrepeat=0',
      ],
      600_000,
    );
  }, 600_000);

  it('mkfs.ext4 and fsck; the image another client exports equals the disk, byte for byte', async () => {
    const disk = device.diskPath!;
    await ok('mkfs.ext4', ['-q', '-F', disk], 300_000);
    await ok('fsck.ext4', ['-n', '-f', disk], 300_000);
    // SYNCHRONIZE CACHE: every acknowledged write is on the OSDs after it (whatever the cache setting).
    await ok('sg_sync', [disk]);
    await sh(`dd if=${disk} of=/tmp/rbd-disk.img bs=1M iflag=direct status=none`);
    await cluster.rbd(['export', `${cluster.pool}/${cluster.image}`, '/tmp/rbd-export.img']);
    expect(await sha256('/tmp/rbd-export.img')).toBe(await sha256('/tmp/rbd-disk.img'));
  }, 600_000);
});

describe('the OSD stops answering for longer than the op timeout', () => {
  it('the kernel gets BUSY and retries; the read completes with the data once the OSD is back', async () => {
    await cluster.rbd(['create', '--size', '8M', `${cluster.pool}/outage`]);
    const outage = await RbdBackend.open({ ...cluster.openOptions, image: 'outage', timeoutSeconds: 2 });
    const served = await openDevice({ name: 'e2e-rbd-outage', backend: outage, nodeDir: '/dev/tcmu-e2e' });
    const statuses: number[] = [];
    const onCommand = (event: CommandEvent) => {
      if (event.opcode === 0x28 || event.opcode === 0x88) statuses.push(event.status);
    };
    served.on('command', onCommand);
    const disk = served.diskPath!;
    try {
      // 4 KiB of random bytes at LBA 8; the object exists before the OSD stops.
      await sh(`head -c 4096 /dev/urandom > /tmp/rbd-outage.bin`);
      await sh(`dd if=/tmp/rbd-outage.bin of=${disk} bs=4k seek=1 oflag=direct conv=fsync status=none`);
      const before = statuses.length;
      cluster.signal('osd.0', 'SIGSTOP');
      let thawed = false;
      const read = sh(
        `dd if=${disk} of=/tmp/rbd-outage.read bs=4k skip=1 count=1 iflag=direct status=none`,
      ).then(() => thawed);
      try {
        // Three op timeouts: the first answers are BUSY, and dd is still waiting.
        await new Promise((resolve) => setTimeout(resolve, 7000));
        const busy = statuses.slice(before).filter((status) => status === 0x08).length;
        console.log(`OSD frozen 7 s (op timeout 2 s): ${busy} READ answered BUSY, dd still waiting`);
        expect(busy).toBeGreaterThanOrEqual(1);
        expect(statuses.slice(before).every((status) => status === 0x08)).toBe(true);
      } finally {
        thawed = true;
        cluster.signal('osd.0', 'SIGCONT');
      }
      expect(await read).toBe(true); // dd finished only after the thaw, without an error
      expect(await sha256('/tmp/rbd-outage.read')).toBe(await sha256('/tmp/rbd-outage.bin'));
      expect(statuses.at(-1)).toBe(0);
    } finally {
      served.off('command', onCommand);
      await served.close();
      await outage.close();
    }
  }, 300_000);
});
