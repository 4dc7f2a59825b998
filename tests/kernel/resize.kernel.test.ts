/**
 * Online resize on the real kernel (in the VM): the image grows, target_core_user's dev_size
 * follows (attrib/dev_size, or control's dev_size= when nobody listens on netlink: ESRCH),
 * and the loopback disk /dev/sdX sees the new capacity after the rescan.
 *
 * Every external command runs asynchronously: this process answers the SCSI commands.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openDevice, openFileBackend } from '@tcmu/device';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = (command: string, args: readonly string[]) =>
  new Promise<string>((resolve, reject) =>
    execFile(command, args, { timeout: 120_000, encoding: 'utf8' }, (error, stdout, stderr) =>
      error
        ? reject(new Error(`${command} ${args.join(' ')}: ${error.message}\n${stderr}`))
        : resolve(stdout),
    ),
  );

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp('/tmp/resize-e2e-');
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('Device.resize on target_core_user', () => {
  it('grows a served image: the kernel size, READ CAPACITY and /dev/sdX follow, and the new end is writable', async () => {
    const image = join(scratch, 'grow.img');
    const file = await openFileBackend(image, { blockSize: 512, create: { size: 16 << 20 }, io: 'sync' });
    const device = await openDevice({ name: 'e2e-resize', backend: file, nodeDir: '/dev/tcmu-e2e' });
    try {
      const disk = device.diskPath!;
      expect((await run('blockdev', ['--getsize64', disk])).trim()).toBe(String(16 << 20));
      await device.resize((48 << 20) / 512);
      expect((await stat(image)).size).toBe(48 << 20);
      const info = await readFile(`${device.backstorePath}/info`, 'utf8');
      expect(info).toMatch(new RegExp(`Size: ${48 << 20}\\b`));
      expect((await readFile(`${device.backstorePath}/attrib/dev_size`, 'utf8')).trim()).toBe(
        String(48 << 20),
      );
      expect((await run('blockdev', ['--getsize64', disk])).trim()).toBe(String(48 << 20));
      // sg_readcap --16: "Last LBA=98303"
      expect(await run('sg_readcap', ['--16', disk])).toMatch(/Last (logical block address|LBA)=98303\b/);
      // The last MiB, past the old end: written and read back through the kernel.
      await run('dd', ['if=/dev/urandom', `of=${join(scratch, 'tail')}`, 'bs=1M', 'count=1', 'status=none']);
      await run('dd', [
        `if=${join(scratch, 'tail')}`,
        `of=${disk}`,
        'bs=1M',
        'seek=47',
        'oflag=direct',
        'status=none',
      ]);
      await run('dd', [
        `if=${disk}`,
        `of=${join(scratch, 'back')}`,
        'bs=1M',
        'skip=47',
        'iflag=direct',
        'status=none',
      ]);
      expect(await readFile(join(scratch, 'back'))).toEqual(await readFile(join(scratch, 'tail')));
      await expect(device.resize(1024)).rejects.toMatchObject({ reason: 'shrink' });
    } finally {
      await device.close();
      await file.close();
    }
  });
});
