/**
 * The data path of issue 8 on the real kernel (run in the VM by `pnpm test:kernel`): the
 * native lane next to the TypeScript path, commands whose data come in several iovecs,
 * out-of-order completion, and an abort while a backend is reading into the ring.
 *
 * Every external command runs asynchronously: this very process answers the SCSI commands.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackendWrapper, type Device, openFileBackend, type FileBackend, openDevice } from '@tcmu/device';
import type { BlockBackend, WriteOptions } from '@tcmu/scsi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ok, run } from './exec.js';

const BLOCK = 512;
const SIZE = 64 << 20;

/** fio with crc32c verification over mixed sizes and deep queues: data area blocks get fragmented. */
const fioVerify = (disk: string, extra: string[] = []) =>
  ok('fio', [
    '--name=verify',
    `--filename=${disk}`,
    '--rw=randwrite',
    '--bssplit=4k/40:16k/20:64k/20:256k/20',
    '--iodepth=32',
    '--direct=1',
    '--ioengine=libaio',
    '--size=48M',
    '--verify=crc32c',
    '--verify_fatal=1',
    '--do_verify=1',
    '--randrepeat=0',
    ...extra,
  ]);

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp('/tmp/data-path-');
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function image(name: string): Promise<string> {
  const path = join(scratch, `${name}.img`);
  await writeFile(path, randomBytes(SIZE));
  return path;
}

/** Counts the scatter lists the emulation hands the backend; optionally delays every call. */
class Observed extends BackendWrapper {
  scattered = 0;
  delays = 0;
  constructor(
    inner: BlockBackend,
    private readonly delayMs: (lba: number) => number,
  ) {
    super(inner);
  }
  override get directFile(): undefined {
    return undefined;
  }
  override get ignoresSignal(): boolean {
    return true;
  }
  async #wait(lba: number): Promise<void> {
    const ms = this.delayMs(lba);
    if (ms > 0) {
      this.delays++;
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
  }
  override async read(lba: number, into: Uint8Array) {
    await this.#wait(lba);
    return this.inner.read(lba, into);
  }
  protected override async readvInner(lba: number, into: readonly Uint8Array[]) {
    this.scattered++;
    await this.#wait(lba);
    return this.inner.readv!(lba, into);
  }
  override async write(lba: number, data: Uint8Array, options: WriteOptions) {
    await this.#wait(lba);
    return this.inner.write(lba, data, options);
  }
  protected override async writevInner(lba: number, data: readonly Uint8Array[], options: WriteOptions) {
    this.scattered++;
    await this.#wait(lba);
    return this.inner.writev!(lba, data, options);
  }
}

async function closeFully(device: Device, file: FileBackend): Promise<void> {
  await device.close({ drainTimeoutMs: 10_000 });
  await file.close();
}

describe('the native lane', () => {
  it('fio verify over mixed sizes at queue depth 32, fsyncs through the emulation; the image holds what was written', async () => {
    const path = await image('lane');
    const file = await openFileBackend(path, { blockSize: BLOCK, io: 'sync' });
    const device = await openDevice({ name: 'lane-e2e', backend: file, nativeLane: true });
    try {
      await fioVerify(device.diskPath!, ['--fsync=16']);
      const lane = device.nativeLane!;
      const stats = device.stats();
      expect(lane.writes).toBeGreaterThan(1000);
      expect(lane.reads).toBeGreaterThan(1000);
      expect(lane.scattered).toBeGreaterThan(0); // commands whose data came in several iovecs
      // SYNCHRONIZE CACHE (and the probe's INQUIRY...) went to the emulation, interleaved.
      expect(stats.commands - lane.reads - lane.writes).toBeGreaterThan(100);
      expect(stats.errors).toBe(0);
      // What the disk holds is what the image holds: read it back through the kernel.
      const sample = await run('dd', [
        `if=${device.diskPath}`,
        'bs=1M',
        'count=48',
        'iflag=direct',
        'status=none',
        `of=${join(scratch, 'lane.back')}`,
      ]);
      expect(sample.code).toBe(0);
      const back = await readFile(join(scratch, 'lane.back'));
      const direct = (await readFile(path)).subarray(0, back.length);
      expect(Buffer.compare(back, direct)).toBe(0);
    } finally {
      await closeFully(device, file);
    }
  });
});

describe('the TypeScript path', () => {
  it('completes out of order (random backend delays) with scattered iovecs through readv/writev; fio verify passes', async () => {
    const path = await image('ooo');
    const file = await openFileBackend(path, { blockSize: BLOCK, io: 'sync' });
    const backend = new Observed(file, () => Math.floor(Math.random() * 4));
    const device = await openDevice({ name: 'ooo-e2e', backend });
    try {
      await fioVerify(device.diskPath!);
      expect(backend.scattered).toBeGreaterThan(0);
      expect(backend.delays).toBeGreaterThan(1000);
      expect(device.stats().errors).toBe(0);
    } finally {
      await closeFully(device, file);
    }
  });

  it('an ABORT TASK during a read into the ring: TASK ABORTED, the late data lands in its own blocks only', async () => {
    const path = await image('abort');
    const file = await openFileBackend(path, { blockSize: BLOCK, io: 'sync' });
    const SLOW_LBA = 4096;
    // The slow read ignores its signal, like I/O that cannot be cancelled once issued.
    const backend = new Observed(file, (lba) => (lba === SLOW_LBA ? 8000 : 0));
    const device = await openDevice({ name: 'abort-e2e', backend });
    const aborted: number[] = [];
    device.on('command', (event) => {
      if (event.status === 0x40) aborted.push(event.id);
    });
    try {
      // sg's 2 s timeout makes the SCSI error handler send ABORT TASK (a TMR entry in the ring).
      const slow = run('sg_raw', [
        '-r',
        '512',
        '-t',
        '2',
        device.diskPath!,
        '28',
        '00',
        '00',
        '00',
        '10',
        '00',
        '00',
        '00',
        '01',
        '00',
      ]);
      await new Promise((resolve) => setTimeout(resolve, 500));
      // Meanwhile other reads and writes use the data area: each must keep its own data.
      const pattern = randomBytes(1 << 20);
      const patternPath = join(scratch, 'pattern');
      await writeFile(patternPath, pattern);
      await ok('dd', [
        `if=${patternPath}`,
        `of=${device.diskPath}`,
        'bs=64k',
        'seek=16',
        'oflag=direct',
        'status=none',
      ]);
      await ok('dd', [
        `if=${device.diskPath}`,
        `of=${patternPath}.back`,
        'bs=64k',
        'skip=16',
        'count=16',
        'iflag=direct',
        'status=none',
      ]);
      expect(Buffer.compare(await readFile(`${patternPath}.back`), pattern)).toBe(0);
      const result = await slow;
      expect(result.code).not.toBe(0); // the initiator gave up on it
      // The backend finishes late, writing into memory the kernel still keeps for that command.
      await new Promise((resolve) => setTimeout(resolve, 9000));
      expect(aborted.length).toBeGreaterThanOrEqual(1);
      await ok('dd', [
        `if=${device.diskPath}`,
        `of=${patternPath}.again`,
        'bs=64k',
        'skip=16',
        'count=16',
        'iflag=direct',
        'status=none',
      ]);
      expect(Buffer.compare(await readFile(`${patternPath}.again`), pattern)).toBe(0);
    } finally {
      await closeFully(device, file);
    }
  });

  it('close() during a slow read into the ring is bounded by its drain deadline (KEEP_BUF); the late read stays in kept memory', async () => {
    const path = await image('keep');
    const file = await openFileBackend(path, { blockSize: BLOCK, io: 'sync' });
    const SLOW_LBA = 8192;
    const backend = new Observed(file, (lba) => (lba === SLOW_LBA ? 6000 : 0));
    const device = await openDevice({ name: 'keep-e2e', backend });
    const uio = device.uioPath!;
    const slow = run('dd', [
      `if=${device.diskPath}`,
      'of=/dev/null',
      'bs=512',
      `skip=${SLOW_LBA}`,
      'count=1',
      'iflag=direct',
    ]);
    for (let i = 0; i < 100 && backend.delays === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(backend.delays).toBe(1);
    const started = performance.now();
    await device.close({ drainTimeoutMs: 1000 });
    expect(performance.now() - started).toBeLessThan(5000); // not the backend's 6 s, nor cmd_time_out
    expect((await slow).code).not.toBe(0);
    // The ring holds the map and the fd until the late read is done, then gives them back.
    await new Promise((resolve) => setTimeout(resolve, 6500));
    expect((await run('test', ['-e', uio])).code).not.toBe(0);
    await file.close();
  });
});
