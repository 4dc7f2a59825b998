/**
 * @tcmu/device end to end on the real kernel (run in the VM by `pnpm test:kernel`):
 * a Node process serves /dev/sdX through target_core_user + tcm_loop, and the
 * standard tools (sg3_utils, dd, mkfs/fsck, fio, libiscsi) use it.
 */
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type Device, openFileBackend, type HandlerMiddleware, openDevice, Target } from '@tcmu/device';
import { ABI, CorruptRingError, mapFd, readUioMapSize } from '@tcmu/ring';
import { MemoryBackend } from '@tcmu/scsi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ok, run, runRaw, sh } from './commands.js';

const CONFIGFS = '/sys/kernel/config/target';
const NODE_DIR = '/dev/tcmu-e2e';

interface Footprint {
  readonly name: string;
  readonly hba: number | undefined;
  readonly luns: readonly { readonly fabric: string; readonly wwn: string }[];
  readonly uioPath: string | undefined;
  readonly diskName: string | undefined;
}

/** What close() must remove: the backstore, its HBA directory, targets, UIO device, disk and node. */
async function leftovers(device: Footprint): Promise<string[]> {
  const found: string[] = [];
  if (device.hba !== undefined && existsSync(`${CONFIGFS}/core/user_${device.hba}`)) {
    found.push(`core/user_${device.hba}`);
  }
  for (const lun of device.luns) {
    if (existsSync(`${CONFIGFS}/${lun.fabric}/${lun.wwn}`)) found.push(`${lun.fabric}/${lun.wwn}`);
  }
  if (existsSync(join(NODE_DIR, device.name))) found.push(join(NODE_DIR, device.name));
  if (device.uioPath && existsSync(device.uioPath)) found.push(device.uioPath);
  if (device.diskName && existsSync(`/sys/block/${device.diskName}`))
    found.push(`/sys/block/${device.diskName}`);
  return found;
}

async function closeAndCheck(device: Device, drainTimeoutMs = 10_000): Promise<void> {
  const footprint: Footprint = {
    name: device.name,
    hba: device.hba,
    luns: device.luns,
    uioPath: device.uioPath,
    diskName: device.disk?.name,
  };
  expect(await leftovers(footprint)).not.toEqual([]); // sanity: the check sees a live device
  await device.close({ drainTimeoutMs });
  expect(await leftovers(footprint)).toEqual([]);
}

const serve = (
  name: string,
  blockSize: number,
  bytes: number,
  extra: Partial<Parameters<typeof openDevice>[0]> = {},
) =>
  openDevice({
    name,
    backend: new MemoryBackend({ blockSize, blockCount: bytes / blockSize }),
    nodeDir: NODE_DIR,
    ...extra,
  });

const readlinkSafe = (path: string) => {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
};

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp('/tmp/device-e2e-');
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('sg3_utils against a 512-byte device', () => {
  let device: Device;
  let disk: string;
  beforeAll(async () => {
    device = await serve('e2e-sg', 512, 64 << 20);
    disk = device.diskPath!;
  });
  afterAll(async () => {
    await closeAndCheck(device);
  });

  it('runs at the kernel queue depth', async () => {
    // TCMU fixes hw_queue_depth at 128 (tcmu_configure_device); the ring's bound matches it.
    expect((await readFile(`${device.backstorePath}/attrib/hw_queue_depth`, 'utf8')).trim()).toBe('128');
    expect(device.queueDepth).toBe(128);
  });

  it('makes the node with the disk numbers, mode 0600 whatever the umask', async () => {
    const out = await ok('stat', ['-c', '%F %t:%T %a', device.nodePath!]);
    expect(out.trim()).toBe(
      `block special file ${device.disk!.major.toString(16)}:${device.disk!.minor.toString(16)} 600`,
    );
  });

  it('sg_inq: a direct-access SPC disk', async () => {
    const out = await ok('sg_inq', [disk]);
    expect(out).toMatch(/PDT=0/);
    expect(out).toMatch(/Vendor identification:\s+\S+/);
    expect(out).toMatch(/CmdQue=1/);
  });

  it('sg_vpd: every page listed in VPD 0x00 decodes', async () => {
    const bytes = await runRaw('sg_vpd', ['--page=0', '--raw', disk]);
    expect(bytes[1]).toBe(0x00);
    const length = bytes.readUInt16BE(2);
    const pages = [...bytes.subarray(4, 4 + length)];
    expect(pages).toContain(0x00);
    expect(pages).toContain(0x80);
    expect(pages).toContain(0x83);
    for (const page of pages) {
      const out = await ok('sg_vpd', [`--page=0x${page.toString(16)}`, disk]);
      expect(out.length).toBeGreaterThan(0);
    }
    const serial = await ok('sg_vpd', ['--page=0x80', disk]);
    expect(serial).toContain(device.identity.serial);
  });

  it('sg_readcap -l: size and block length', async () => {
    const out = await ok('sg_readcap', ['-l', disk]);
    expect(out).toMatch(/Last LBA=131071 \(0x1ffff\)/);
    expect(out).toMatch(/Logical block length=512 bytes/);
  });

  it('sg_modes -a: every mode page', async () => {
    const out = await ok('sg_modes', ['-a', disk]);
    expect(out).toMatch(/Caching/i);
    expect(out).toMatch(/Control/i);
  });

  it('sg_opcodes: the supported operation codes', async () => {
    const out = await ok('sg_opcodes', [disk]);
    expect(out).toMatch(/Read\(10\)/i);
    expect(out).toMatch(/Write\(16\)/i);
  });

  it('sg_sync: SYNCHRONIZE CACHE', async () => {
    await ok('sg_sync', [disk]);
  });

  it('sg_requests: no sense pending', async () => {
    const out = await run('sg_requests', [disk]);
    expect(out.code).toBe(0);
  });

  it('sg_write_same then sg_unmap: the range holds the pattern, then zeros', async () => {
    const block = Buffer.alloc(512, 0xa5);
    const file = join(scratch, 'ws-block');
    await writeFile(file, block);
    await ok('sg_write_same', [`--in=${file}`, '--lba=1000', '--num=64', disk]);
    const back = join(scratch, 'ws-back');
    await sh(`dd if=${disk} of=${back} bs=512 skip=1000 count=64 iflag=direct status=none`);
    expect((await readFile(back)).equals(Buffer.alloc(64 * 512, 0xa5))).toBe(true);

    await ok('sg_unmap', ['--force', '--lba=1000', '--num=64', disk]); // --force: no 15 s countdown
    await sh(`dd if=${disk} of=${back} bs=512 skip=1000 count=64 iflag=direct status=none`);
    expect((await readFile(back)).equals(Buffer.alloc(64 * 512))).toBe(true);
  });

  it('sg_compare_and_write: a match writes, a miscompare does not (exit 14)', async () => {
    const current = Buffer.alloc(512, 0x11);
    await writeFile(join(scratch, 'caw-current'), current);
    await sh(`dd if=${join(scratch, 'caw-current')} of=${disk} bs=512 seek=2000 oflag=direct status=none`);
    const next = Buffer.alloc(512, 0x22);
    await writeFile(join(scratch, 'caw-match'), Buffer.concat([current, next]));
    await ok('sg_compare_and_write', [`--in=${join(scratch, 'caw-match')}`, '--lba=2000', '--num=1', disk]);

    await writeFile(join(scratch, 'caw-miss'), Buffer.concat([current, Buffer.alloc(512, 0x33)]));
    const miss = await run('sg_compare_and_write', [
      `--in=${join(scratch, 'caw-miss')}`,
      '--lba=2000',
      '--num=1',
      disk,
    ]);
    expect(miss.code).toBe(14); // SG_LIB_CAT_MISCOMPARE

    await sh(
      `dd if=${disk} of=${join(scratch, 'caw-back')} bs=512 skip=2000 count=1 iflag=direct status=none`,
    );
    expect((await readFile(join(scratch, 'caw-back'))).equals(next)).toBe(true);
  });

  it('sg_raw: invalid CDBs get the right sense', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['c0', '00', '00', '00', '00', '00'], /Invalid command operation code/i], // vendor-specific opcode
      [['12', '00', '80', '00', '60', '00'], /Invalid field in cdb/i], // INQUIRY page code without EVPD
      [['12', '01', 'fe', '00', '60', '00'], /Invalid field in cdb/i], // unknown VPD page
      [['28', '00', '00', '02', '00', '00', '00', '00', '01', '00'], /Logical block address out of range/i], // READ(10) past the end
      [['28', '00', '00', '00', '00', '00', '00', '00', '01', '04'], /Invalid field in cdb/i], // NACA=1
    ];
    for (const [cdb, sense] of cases) {
      const result = await run('sg_raw', ['-r', '512', disk, ...cdb]);
      const text = `${result.stdout}\n${result.stderr}`;
      expect(text, `sg_raw ${cdb.join(' ')}`).toMatch(/Check Condition/i);
      expect(text, `sg_raw ${cdb.join(' ')}`).toMatch(sense);
    }
  });

  it('O_DIRECT dd of a random pattern reads back identical', async () => {
    const pattern = join(scratch, 'pattern512');
    await sh(`head -c $((8 << 20)) /dev/urandom > ${pattern}`);
    await sh(`dd if=${pattern} of=${disk} bs=1M oflag=direct status=none`);
    await sh(`dd if=${disk} of=${pattern}.back bs=1M count=8 iflag=direct status=none`);
    await ok('cmp', [pattern, `${pattern}.back`]);
    // an odd size and offset too
    await sh(`dd if=${pattern} of=${disk} bs=512 count=37 seek=9999 oflag=direct status=none`);
    await sh(`dd if=${disk} of=${pattern}.odd bs=512 count=37 skip=9999 iflag=direct status=none`);
    await ok('cmp', ['-n', String(37 * 512), pattern, `${pattern}.odd`]);
  });
});

describe('a 4096-byte device', () => {
  it('O_DIRECT dd of a random pattern reads back identical', async () => {
    const device = await serve('e2e-4k', 4096, 64 << 20);
    try {
      const disk = device.diskPath!;
      expect((await ok('blockdev', ['--getss', disk])).trim()).toBe('4096');
      const pattern = join(scratch, 'pattern4k');
      await sh(`head -c $((8 << 20)) /dev/urandom > ${pattern}`);
      await sh(`dd if=${pattern} of=${disk} bs=1M oflag=direct status=none`);
      await sh(`dd if=${disk} of=${pattern}.back bs=1M count=8 iflag=direct status=none`);
      await ok('cmp', [pattern, `${pattern}.back`]);
    } finally {
      await closeAndCheck(device);
    }
  });
});

/** The two backends a user serves from: memory, and an image file (FileBackend, io 'sync'). */
const backends = ['memory', 'file'] as const;
type BackendKind = (typeof backends)[number];

/** serve() over the chosen backend; a file backend's image is made (sparse) in the scratch dir. */
async function serveOn(kind: BackendKind, name: string, blockSize: number, bytes: number) {
  if (kind === 'memory') return { device: await serve(name, blockSize, bytes), image: undefined };
  const image = join(scratch, `${name}.img`);
  await ok('truncate', ['-s', String(bytes), image]);
  const file = await openFileBackend(image, { blockSize, io: 'sync' });
  const device = await openDevice({ name, backend: file, nodeDir: NODE_DIR });
  device.once('close', () => void file.close());
  return { device, image };
}

describe.each(backends)('a filesystem on the %s backend', (kind) => {
  it('mkfs.ext4, mount, write, umount, fsck -fn clean, remount, verify', async () => {
    const { device, image } = await serveOn(kind, `e2e-fs-${kind}`, 4096, 128 << 20);
    const mnt = join(scratch, `mnt-${kind}`);
    await mkdir(mnt, { recursive: true });
    try {
      const disk = device.diskPath!;
      await ok('mkfs.ext4', ['-q', '-F', disk]);
      await ok('mount', [disk, mnt]);
      await sh(`head -c $((5 << 20)) /dev/urandom > ${scratch}/fs-a && cp ${scratch}/fs-a ${mnt}/a`);
      await sh(`mkdir -p ${mnt}/d/e && for i in $(seq 1 50); do echo "file $i" > ${mnt}/d/e/f$i; done`);
      await ok('umount', [mnt]);
      await ok('fsck.ext4', ['-fn', disk]);
      await ok('mount', [disk, mnt]);
      await ok('cmp', [`${scratch}/fs-a`, `${mnt}/a`]);
      expect((await readFile(`${mnt}/d/e/f37`, 'utf8')).trim()).toBe('file 37');
      await ok('umount', [mnt]);
    } finally {
      await run('umount', [mnt]);
      await closeAndCheck(device);
    }
    // What the file backend acknowledged is in the image: the same filesystem checks clean from it.
    if (image) await ok('fsck.ext4', ['-fn', image]);
  });
});

describe.each(backends)('fio on the %s backend', (kind) => {
  it('random writes and reads over 256 MiB verify with crc32c, zero errors', async () => {
    const { device, image } = await serveOn(kind, `e2e-fio-${kind}`, 4096, 256 << 20);
    try {
      const out = await ok(
        'fio',
        [
          '--name=verify',
          `--filename=${device.diskPath}`,
          '--rw=randwrite',
          '--bs=64k',
          '--size=256M',
          '--direct=1',
          '--ioengine=libaio',
          '--iodepth=16',
          '--verify=crc32c',
          '--do_verify=1',
          '--verify_fatal=1',
          '--output-format=json',
        ],
        600_000,
      );
      const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBe(256 * 1024 * 1024);
      expect(job.read.io_bytes).toBe(256 * 1024 * 1024); // the verify pass read everything back
      expect(device.stats().errors).toBe(0);
    } finally {
      await closeAndCheck(device);
      if (image) await rm(image, { force: true });
    }
  });
});

describe('a corrupt ring on the real kernel', () => {
  it('a stray write to cmd_head: reported, reset through action/reset_ring, and the disk serves again', async () => {
    const device = await serve('e2e-corrupt', 512, 16 << 20);
    const errors: Error[] = [];
    device.on('error', (error) => errors.push(error));
    const recovered = new Promise<Error>((resolve) => device.once('recovered', resolve));
    // A second mapping of the same UIO memory (this process's open /dev/uioN): what a stray
    // write into the ring would be. cmd_head moves 8 bytes past cmd_tail, onto zeros.
    const fd = readdirSync('/proc/self/fd')
      .map(Number)
      .find((n) => readlinkSafe(`/proc/self/fd/${n}`) === device.uioPath);
    expect(fd).toBeDefined();
    const mapping = mapFd(fd!, readUioMapSize(device.uioPath!));
    try {
      const tail = mapping.loadAcquire(ABI.mailbox.cmdTail);
      const cmdrOffset = new DataView(mapping.buffer).getUint32(ABI.mailbox.cmdrOff, true);
      new Uint8Array(mapping.buffer, cmdrOffset + tail, 8).fill(0);
      mapping.storeRelease(ABI.mailbox.cmdHead, tail + 8);
      // Any command makes the kernel notify us: the walk then meets the zero-length entry.
      const reading = ok('dd', [
        `if=${device.diskPath}`,
        'of=/dev/null',
        'bs=4k',
        'count=64',
        'iflag=direct',
        'status=none',
      ]);
      expect(await recovered).toBeInstanceOf(CorruptRingError);
      await reading; // its commands came back BUSY from the reset and were retried
    } finally {
      mapping.unmap();
    }
    expect(errors[0]).toBeInstanceOf(CorruptRingError);
    expect(device.state).toBe('ready');
    expect(device.recoveries).toBe(1);
    const pattern = await sh(
      `head -c 65536 /dev/urandom | tee ${scratch}/corrupt-a | dd of=${device.diskPath} bs=64k oflag=direct status=none && dd if=${device.diskPath} bs=64k count=1 iflag=direct status=none | cmp - ${scratch}/corrupt-a && echo same`,
    );
    expect(pattern.trim()).toBe('same');
    await closeAndCheck(device);
  });
});

describe('no leaks on the real kernel', () => {
  it('4 devices opened, used with dd and closed 8 times: fds, configfs, UIO devices and heap back to baseline', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const fds = () => readdirSync('/proc/self/fd').length;
    const userHbas = () =>
      readdirSync(`${CONFIGFS}/core`)
        .filter((entry) => entry.startsWith('user_'))
        .sort();
    const uios = () => (existsSync('/sys/class/uio') ? readdirSync('/sys/class/uio').sort() : []);
    const baseline = { fds: fds(), hbas: userHbas(), uios: uios() };
    let heapAfterFirst = 0;
    for (let round = 0; round < 8; round++) {
      const devices = [];
      for (let i = 0; i < 4; i++) devices.push(await serve(`e2e-leak${i}`, 512, 8 << 20));
      for (const device of devices) {
        await ok('dd', [
          `if=${device.diskPath}`,
          'of=/dev/null',
          'bs=64k',
          'count=16',
          'iflag=direct',
          'status=none',
        ]);
      }
      for (const device of devices) await closeAndCheck(device);
      if (round === 0) {
        gc();
        heapAfterFirst = process.memoryUsage().heapUsed;
      }
    }
    gc();
    const growth = process.memoryUsage().heapUsed - heapAfterFirst;
    console.log(
      `leaks in the VM: 32 devices, fds ${fds()} (baseline ${baseline.fds}), heap growth ${(growth / 1024).toFixed(0)} KiB`,
    );
    expect(fds()).toBe(baseline.fds);
    expect(userHbas()).toEqual(baseline.hbas);
    expect(uios()).toEqual(baseline.uios);
    expect(growth).toBeLessThan(8 << 20); // a device graph left behind per cycle would be ~0.5 MB each
  });
});

describe('several devices', () => {
  it('two devices at once serve independent data; close leaves nothing behind', async () => {
    const a = await serve('e2e-two-a', 512, 32 << 20);
    const b = await serve('e2e-two-b', 4096, 32 << 20);
    try {
      expect(a.diskPath).not.toBe(b.diskPath);
      await sh(
        `head -c $((4 << 20)) /dev/urandom > ${scratch}/two-a; head -c $((4 << 20)) /dev/urandom > ${scratch}/two-b`,
      );
      await Promise.all([
        sh(`dd if=${scratch}/two-a of=${a.diskPath} bs=1M oflag=direct status=none`),
        sh(`dd if=${scratch}/two-b of=${b.diskPath} bs=1M oflag=direct status=none`),
      ]);
      await Promise.all([
        sh(`dd if=${a.diskPath} of=${scratch}/two-a.back bs=1M count=4 iflag=direct status=none`),
        sh(`dd if=${b.diskPath} of=${scratch}/two-b.back bs=1M count=4 iflag=direct status=none`),
      ]);
      await ok('cmp', [`${scratch}/two-a`, `${scratch}/two-a.back`]);
      await ok('cmp', [`${scratch}/two-b`, `${scratch}/two-b.back`]);
    } finally {
      await closeAndCheck(a);
      await closeAndCheck(b);
    }
  });
});

describe('several LUNs on one loopback target', () => {
  it('two devices as LUN 0 and 1 of one Target get their own disks; target.close removes it all', async () => {
    const target = await Target.open({ name: 'e2e-target' });
    const a = await target.openDevice({
      name: 'e2e-lun-a',
      backend: new MemoryBackend({ blockSize: 512, blockCount: 16384 }),
    });
    const b = await target.openDevice({
      name: 'e2e-lun-b',
      backend: new MemoryBackend({ blockSize: 512, blockCount: 32768 }),
    });
    const footprints = [a, b].map((d) => ({
      name: d.name,
      hba: d.hba,
      luns: d.luns,
      uioPath: d.uioPath,
      diskName: d.disk?.name,
    }));
    try {
      expect(a.luns[0]!.lun).toBe(0);
      expect(b.luns[0]!.lun).toBe(1);
      expect(a.diskPath).not.toBe(b.diskPath);
      expect((await ok('blockdev', ['--getsize64', a.diskPath!])).trim()).toBe(String(16384 * 512));
      expect((await ok('blockdev', ['--getsize64', b.diskPath!])).trim()).toBe(String(32768 * 512));
      await sh(`head -c 65536 /dev/urandom > ${scratch}/lun-a`);
      await sh(`dd if=${scratch}/lun-a of=${a.diskPath} bs=64k oflag=direct status=none`);
      await sh(`dd if=${a.diskPath} of=${scratch}/lun-a.back bs=64k count=1 iflag=direct status=none`);
      await ok('cmp', [`${scratch}/lun-a`, `${scratch}/lun-a.back`]);
    } finally {
      await target.close({ drainTimeoutMs: 10_000 });
    }
    for (const footprint of footprints) expect(await leftovers(footprint)).toEqual([]);
  });
});

describe('close under load', () => {
  it('is bounded by drainTimeoutMs with hung writes in flight, and leaves nothing behind', async () => {
    // Writes of more than one page hang and ignore their AbortSignal: the worst handler.
    const hang: HandlerMiddleware = async (cmd, next) => {
      if (cmd.opcode === 0x2a && cmd.dataOut.length > 4096)
        await new Promise((resolve) => setTimeout(resolve, 60_000));
      return next(cmd);
    };
    const device = await serve('e2e-busy', 512, 32 << 20, { middleware: [hang] });
    const fio = run('fio', [
      '--name=busy',
      `--filename=${device.diskPath}`,
      '--rw=randwrite',
      '--bs=64k',
      '--size=16M',
      '--direct=1',
      '--ioengine=libaio',
      '--iodepth=8',
      '--time_based',
      '--runtime=120',
    ]);
    for (let i = 0; i < 600 && device.stats().inFlight < 4; i++) await new Promise((r) => setTimeout(r, 100));
    expect(device.stats().inFlight).toBeGreaterThanOrEqual(4);
    // Without the drain deadline this never returns (the kernel's LUN removal waits for the writes).
    await closeAndCheck(device, 1000);
    expect(device.stats().aborted).toBeGreaterThanOrEqual(4);
    expect((await fio).code).not.toBe(0); // the initiator saw its disk go away
  });
});

describe('iSCSI', () => {
  it('the same LUN on 127.0.0.1:3260 answers iscsi-inq and iscsi-readcapacity16', async () => {
    const device = await serve('e2e-iscsi', 512, 32 << 20, {
      fabric: [{ type: 'loopback' }, { type: 'iscsi', portal: '127.0.0.1:3260' }],
    });
    try {
      const iqn = device.luns.find((l) => l.fabric === 'iscsi')!.wwn;
      const url = `iscsi://127.0.0.1/${iqn}/0`;
      const inq = await ok('iscsi-inq', [url]);
      expect(inq).toMatch(/Peripheral Device Type/i);
      const cap = await ok('iscsi-readcapacity16', [url]);
      expect(cap).toMatch(/LOGICAL BLOCK LENGTH IN BYTES:\s*512/);
      expect(cap).toMatch(/RETURNED LOGICAL BLOCK ADDRESS:\s*65535/);
      // the loopback disk of the same LUN still works
      await ok('sg_inq', [device.diskPath!]);
    } finally {
      await closeAndCheck(device);
    }
  });
});
