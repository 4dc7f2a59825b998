import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BlockBackend,
  decodeSense,
  encodeExtendedCopyParameters,
  FaultInjectionBackend,
  MemoryBackend,
} from '@tcmu/scsi';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CommandEvent } from './device.js';
import { DeviceSetupError, HandlerError, InvalidDeviceOptionError, TeardownError } from './errors.js';
import type { DeviceCommand, Handler, HandlerResult, HandlerMiddleware } from './handler.js';
import { createDevice, openDevice, Target } from './open.js';
import type { OpenDeviceOptions } from './options.js';
import type { DevicePlatform } from './platform.js';
import { createHarness, type Harness, rw10 } from './testing/harness.js';

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;
const TASK_ABORTED = 0x40;

const inquiry = (page?: number, length = 255) =>
  page === undefined ? Uint8Array.of(0x12, 0, 0, 0, length, 0) : Uint8Array.of(0x12, 1, page, 0, length, 0);
const readCapacity16 = Uint8Array.of(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);
/** Assertion message: the decoded sense of a failed command. */
const explain = (result: { status: number; sense: Uint8Array }) =>
  result.sense.length > 0 ? JSON.stringify(decodeSense(result.sense)) : `status ${result.status}`;
const ascii = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1');
const pattern = (length: number, seed: number) =>
  Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);

let harness: Harness;
beforeEach(async () => {
  harness = await createHarness();
});
afterEach(async () => {
  await harness.dispose();
});

const memory = (blockSize = 512, blockCount = 2048) => new MemoryBackend({ blockSize, blockCount });
const open = (options: Partial<OpenDeviceOptions> = {}) =>
  openDevice({
    name: 'vol0',
    backend: memory(),
    platform: harness.platform,
    ...options,
  } as OpenDeviceOptions);

/** Fabric and core directories the kernel makes by itself (module load), not ours. */
const KERNEL_OWN = /^(version|core|core\/alua.*|(loopback|iscsi)(\/(discovery_auth|version)(\/.*)?)?)$/;
/** configfs, sysfs uio and scsi entries: empty when nothing of ours is left. */
const leftovers = async () => (await harness.kernel.snapshot()).filter((p) => !KERNEL_OWN.test(p));

describe('openDevice', () => {
  it('creates backstore, ring, loopback LUN, disk and node, then answers INQUIRY through the ring', async () => {
    const device = await open({ nodeDir: join(harness.nodeDir, 'tcmufile'), nodeKind: 'symlink' });
    try {
      expect(device.state).toBe('ready');
      expect(device.uioPath).toMatch(/\/dev\/uio\d+$/);
      expect(device.diskPath).toMatch(/\/dev\/sd[a-z]+$/);
      expect(device.backstorePath).toMatch(/core\/user_\d+\/vol0$/);
      expect(device.luns).toEqual([{ fabric: 'loopback', wwn: expect.stringMatching(/^naa\./), lun: 0 }]);
      expect(device.nodePath).toBe(join(harness.nodeDir, 'tcmufile', 'vol0'));
      expect(await readlink(device.nodePath!)).toBe(device.diskPath);

      const std = await harness.submit(device, { cdb: inquiry(), dataInLength: 255 });
      expect(std.status).toBe(GOOD);
      expect(std.dataIn[0]).toBe(0x00); // direct-access block device
      expect(std.dataIn.length).toBe(std.dataIn[4]! + 5);
      // Version descriptors: SAM-5, SPC-4, SBC-4, then SAS-3, the loopback fabric's transport.
      expect([58, 60, 62, 64].map((o) => (std.dataIn[o]! << 8) | std.dataIn[o + 1]!)).toEqual([
        0x00a0, 0x0460, 0x0600, 0x0c60,
      ]);

      const serialPage = await harness.submit(device, { cdb: inquiry(0x80), dataInLength: 255 });
      expect(serialPage.status).toBe(GOOD);
      expect(ascii(serialPage.dataIn.subarray(4))).toBe(device.identity.serial);
    } finally {
      await device.close();
    }
    expect(await leftovers()).toEqual([]);
    expect(await readdir(harness.nodeDir)).toEqual([]);
  });

  it('applies the unit options and logs through the injected logger', async () => {
    const lines: string[] = [];
    const log = (obj: object, msg?: string) => {
      lines.push(msg ?? JSON.stringify(obj));
    };
    const device = await open({
      unit: { vendor: 'ACME', product: 'Widget', revision: '0042' },
      logger: { debug: log, info: log, warn: log, error: log },
    });
    try {
      const std = await harness.submit(device, { cdb: inquiry(), dataInLength: 96 });
      expect(ascii(std.dataIn.subarray(8, 16))).toBe('ACME    ');
      expect(ascii(std.dataIn.subarray(16, 32))).toBe('Widget          ');
      expect(ascii(std.dataIn.subarray(32, 36))).toBe('0042');
      expect(lines).toContain('device ready');
    } finally {
      await device.close();
    }
  });

  it('emits ready to listeners attached before open()', async () => {
    const device = createDevice({ name: 'vol0', backend: memory(), platform: harness.platform });
    const events: string[] = [];
    device.on('ready', () => events.push('ready'));
    device.on('close', () => events.push('close'));
    await device.open();
    await device.close();
    expect(events).toEqual(['ready', 'close']);
  });

  it('validates options before touching anything', async () => {
    await expect(open({ name: 'bad/name' })).rejects.toThrow(InvalidDeviceOptionError);
    expect(await leftovers()).toEqual([]);
  });

  it('makes a block node with the disk numbers (or reports EPERM without root)', async () => {
    const attempt = open({ nodeDir: harness.nodeDir });
    if (process.getuid?.() !== 0) {
      await expect(attempt).rejects.toMatchObject({ step: 'node' });
      return;
    }
    const device = await attempt;
    try {
      const stat = await lstat(device.nodePath!);
      expect(stat.isBlockDevice()).toBe(true);
      const disk = device.disk!;
      expect([Math.floor(stat.rdev / 256) & 0xfff, (stat.rdev & 0xff) | ((stat.rdev >> 12) & ~0xff)]).toEqual(
        [disk.major, disk.minor],
      );
    } finally {
      await device.close();
    }
    expect(await readdir(harness.nodeDir)).toEqual([]);
  });

  it('refuses a node path that exists, leaves it alone and undoes everything else', async () => {
    const { writeFile, readFile } = await import('node:fs/promises');
    await writeFile(join(harness.nodeDir, 'vol0'), 'precious');
    const error = await open({ nodeDir: harness.nodeDir, nodeKind: 'symlink' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ step: 'node' });
    expect(String((error as Error).message)).toMatch(/already exists/);
    expect(await readFile(join(harness.nodeDir, 'vol0'), 'utf8')).toBe('precious');
    expect(await leftovers()).toEqual([]);
  });

  it('refuses a name already in use', async () => {
    const first = await open();
    try {
      await expect(open()).rejects.toMatchObject({ step: 'backstore' });
      // the first device is untouched
      expect((await harness.submit(first, { cdb: inquiry(), dataInLength: 96 })).status).toBe(GOOD);
    } finally {
      await first.close();
    }
    expect(await leftovers()).toEqual([]);
  });
});

describe('data path', () => {
  it('writes and reads back through the ring, zero-copy Data-Out, exact Data-In', async () => {
    const device = await open();
    try {
      const data = pattern(8 * 512, 3);
      const write = await harness.submit(device, { cdb: rw10(0x2a, 100, 8), dataOut: data });
      expect(write.status, explain(write)).toBe(GOOD);
      const read = await harness.submit(device, { cdb: rw10(0x28, 100, 8), dataInLength: 8 * 512 });
      expect(read.status, explain(read)).toBe(GOOD);
      expect(Buffer.from(read.dataIn).equals(Buffer.from(data))).toBe(true);

      const capacity = await harness.submit(device, { cdb: readCapacity16, dataInLength: 32 });
      expect(capacity.status).toBe(GOOD);
      const view = new DataView(capacity.dataIn.buffer, capacity.dataIn.byteOffset);
      expect(view.getUint32(4)).toBe(2047); // last LBA (low half)
      expect(view.getUint32(8)).toBe(512);

      const stats = device.stats();
      expect(stats).toMatchObject({ reads: 1, writes: 1, bytesWritten: 4096, inFlight: 0, errors: 0 });
      expect(stats.bytesRead).toBeGreaterThanOrEqual(4096 + 32);
      expect(stats.commands).toBe(3);
      expect(stats.latency.count).toBe(3);
    } finally {
      await device.close();
    }
  });

  it('answers out-of-range reads with LBA OUT OF RANGE and counts the error', async () => {
    const device = await open();
    try {
      const result = await harness.submit(device, { cdb: rw10(0x28, 2047, 2), dataInLength: 1024 });
      expect(result.status).toBe(CHECK_CONDITION);
      expect(decodeSense(result.sense)).toMatchObject({ key: 0x05, asc: 0x21, ascq: 0x00 });
      expect(result.dataIn.length).toBe(0);
      expect(device.stats().errors).toBe(1);
    } finally {
      await device.close();
    }
  });

  it('reports a fault-injected bad block as MEDIUM ERROR with its LBA', async () => {
    const device = await open({ backend: new FaultInjectionBackend(memory(), { failReads: [42] }) });
    try {
      const result = await harness.submit(device, { cdb: rw10(0x28, 40, 4), dataInLength: 2048 });
      expect(result.status).toBe(CHECK_CONDITION);
      expect(decodeSense(result.sense)).toMatchObject({ key: 0x03, asc: 0x11, ascq: 0x00, information: 42 });
      expect((await harness.submit(device, { cdb: rw10(0x28, 43, 1), dataInLength: 512 })).status).toBe(GOOD);
    } finally {
      await device.close();
    }
  });

  it('a transient backend failure reaches the ring as status BUSY with no sense; the retry succeeds', async () => {
    let down = true;
    const backend = new FaultInjectionBackend(memory(), { failReads: () => down, transient: true });
    const device = await open({ backend });
    try {
      const result = await harness.submit(device, { cdb: rw10(0x28, 40, 4), dataInLength: 2048 });
      expect(result.status).toBe(0x08);
      expect(result.sense.length).toBe(0);
      down = false;
      expect((await harness.submit(device, { cdb: rw10(0x28, 40, 4), dataInLength: 2048 })).status).toBe(
        GOOD,
      );
    } finally {
      await device.close();
    }
  });

  it('runs many commands concurrently over an async backend, bounded by queueDepth', async () => {
    const inner = memory();
    let running = 0;
    let peak = 0;
    const slow: BlockBackend = {
      blockSize: inner.blockSize,
      blockCount: inner.blockCount,
      async read(lba, into) {
        running++;
        peak = Math.max(peak, running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
        return inner.read(lba, into);
      },
      write: (lba, data, options) => inner.write(lba, data, options),
      flush: () => inner.flush(),
    };
    const device = await open({ backend: slow, queueDepth: 4 });
    try {
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          harness.submit(device, { cdb: rw10(0x28, i, 1), dataInLength: 512 }),
        ),
      );
      for (const result of results) expect(result.status, explain(result)).toBe(GOOD);
      expect(peak).toBeGreaterThan(1);
      expect(peak).toBeLessThanOrEqual(4);
      expect(device.stats().maxInFlight).toBeLessThanOrEqual(4);
    } finally {
      await device.close();
    }
  });

  it('keeps COMPARE AND WRITE atomic: of two racing CAWs with the same compare data, one miscompares', async () => {
    const device = await open();
    try {
      const zero = new Uint8Array(512);
      const caw = (fill: number) => {
        const payload = new Uint8Array(1024);
        payload.set(zero, 0);
        payload.fill(fill, 512);
        // COMPARE AND WRITE: LBA 5, 1 block.
        const cdb = Uint8Array.of(0x89, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0);
        return harness.submit(device, { cdb, dataOut: payload });
      };
      const [a, b] = await Promise.all([caw(0xaa), caw(0xbb)]);
      const statuses = [a.status, b.status].sort();
      expect(statuses).toEqual([GOOD, CHECK_CONDITION]);
      const loser = a.status === GOOD ? b : a;
      expect(decodeSense(loser.sense)).toMatchObject({ key: 0x0e, asc: 0x1d });
    } finally {
      await device.close();
    }
  });

  it('emits a command event with the latency', async () => {
    const device = await open();
    const events: CommandEvent[] = [];
    device.on('command', (event) => events.push(event));
    try {
      await harness.submit(device, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ opcode: 0x2a, status: GOOD, dataOutBytes: 512, dataInBytes: 0 });
      expect(events[0]!.latencyMs).toBeGreaterThanOrEqual(0);
    } finally {
      await device.close();
    }
  });
});

describe('handlers and middleware', () => {
  it('wraps the emulation with middleware that sees every command', async () => {
    const seen: number[] = [];
    const spy: HandlerMiddleware = (cmd, next) => {
      seen.push(cmd.opcode);
      return next(cmd);
    };
    const device = await open({ middleware: [spy] });
    try {
      await harness.submit(device, { cdb: inquiry(), dataInLength: 96 });
      await harness.submit(device, { cdb: Uint8Array.of(0, 0, 0, 0, 0, 0) });
      expect(seen).toEqual([0x12, 0x00]);
    } finally {
      await device.close();
    }
  });

  it('serves a custom handler without a backend; Data-In longer than asked is cut', async () => {
    const handler: Handler = (cmd) => ({
      status: GOOD,
      dataIn: new Uint8Array(cmd.dataInLength + 100).fill(0x5a),
    });
    const device = await openDevice({
      name: 'custom',
      handler,
      size: 1 << 20,
      blockSize: 4096,
      platform: harness.platform,
    });
    try {
      expect(device.unit).toBeUndefined();
      const result = await harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 4096 });
      expect(result.status).toBe(GOOD);
      expect(result.dataIn.length).toBe(4096);
      expect(result.dataIn.every((b) => b === 0x5a)).toBe(true);
    } finally {
      await device.close();
    }
  });

  it('hands a handler the ring command itself: a write reads dataOut, a read fills dataInBuffer in place', async () => {
    const seen: Array<{ out: number; inLength: number; first?: number }> = [];
    const handler: Handler = (cmd: DeviceCommand) => {
      if (cmd.opcode === 0x2a) {
        seen.push({ out: cmd.dataOutLength, inLength: cmd.dataInLength, first: cmd.dataOut[0]! });
        return { status: GOOD };
      }
      const buffer = cmd.dataInBuffer as Uint8Array;
      buffer.fill(0x5c); // no copy: the ring's Data-In memory
      seen.push({ out: cmd.dataOutLength, inLength: cmd.dataInLength });
      return { status: GOOD };
    };
    const device = await openDevice({
      name: 'dirs',
      handler,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    try {
      await harness.submit(device, { cdb: rw10(0x2a, 0, 2), dataOut: new Uint8Array(1024).fill(9) });
      const read = await harness.submit(device, { cdb: rw10(0x28, 0, 2), dataInLength: 1024 });
      // The ring has one main buffer: its length is both, the opcode says which it is.
      expect(seen).toEqual([
        { out: 1024, inLength: 1024, first: 9 },
        { out: 1024, inLength: 1024 },
      ]);
      expect(read.dataIn).toEqual(new Uint8Array(1024).fill(0x5c));
    } finally {
      await device.close();
    }
  });

  it('answers HARDWARE ERROR / INTERNAL TARGET FAILURE when a handler throws, and emits error', async () => {
    const errors: Error[] = [];
    const throwing: Handler = (cmd) => {
      if (cmd.opcode === 0x28) throw new Error('disk on fire');
      return Promise.reject(new Error('async fire'));
    };
    const device = await openDevice({
      name: 'x',
      handler: throwing,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    device.on('error', (error) => errors.push(error));
    try {
      const sync = await harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 });
      const async = await harness.submit(device, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
      for (const result of [sync, async]) {
        expect(result.status).toBe(CHECK_CONDITION);
        expect(decodeSense(result.sense)).toMatchObject({ key: 0x04, asc: 0x44, ascq: 0x00 });
      }
      expect(errors).toHaveLength(2);
      expect(errors[0]).toBeInstanceOf(HandlerError);
      expect((errors[0]!.cause as Error).message).toBe('disk on fire');
    } finally {
      await device.close();
    }
  });

  it('treats a malformed result as a handler bug', async () => {
    const device = await openDevice({
      name: 'x',
      handler: () => ({ status: 300 }) as HandlerResult,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    const errors: Error[] = [];
    device.on('error', (error) => errors.push(error));
    try {
      const result = await harness.submit(device, { cdb: Uint8Array.of(0, 0, 0, 0, 0, 0) });
      expect(result.status).toBe(CHECK_CONDITION);
      expect(errors[0]).toBeInstanceOf(HandlerError);
    } finally {
      await device.close();
    }
  });

  it('aborts the command signal on a kernel TMR', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const handler: Handler = (cmd) =>
      new Promise((resolve) => {
        started();
        cmd.signal.addEventListener('abort', () => resolve({ status: TASK_ABORTED }));
      });
    const device = await openDevice({
      name: 'x',
      handler,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    try {
      const pending = harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 });
      await running;
      harness.simulator(device).tmr();
      const result = await pending;
      expect(result.aborted).toBe(true);
      expect(device.stats().aborted).toBe(1);
    } finally {
      await device.close();
    }
  });
});

describe('TMR before the handler looks', () => {
  it('hands out an already aborted signal when the TMR came first', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let arrived!: () => void;
    const running = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let sawAborted: boolean | undefined;
    const handler: Handler = async (cmd) => {
      arrived();
      await gate;
      sawAborted = cmd.signal.aborted;
      return { status: sawAborted ? TASK_ABORTED : GOOD };
    };
    const device = await openDevice({
      name: 'x',
      handler,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    try {
      const pending = harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 });
      await running;
      harness.simulator(device).tmr();
      await new Promise((resolve) => setTimeout(resolve, 20));
      release();
      await pending;
      expect(sawAborted).toBe(true);
    } finally {
      await device.close();
    }
  });
});

describe('abort state without an AbortController', () => {
  it('the default handler builds no AbortController for commands that never wait', async () => {
    const Original = globalThis.AbortController;
    let built = 0;
    globalThis.AbortController = class extends Original {
      constructor() {
        super();
        built++;
      }
    };
    const device = await open();
    try {
      const data = pattern(4096, 3);
      expect((await harness.submit(device, { cdb: rw10(0x2a, 8, 8), dataOut: data })).status).toBe(GOOD);
      const read = await harness.submit(device, { cdb: rw10(0x28, 8, 8), dataInLength: 4096 });
      expect(read.status).toBe(GOOD);
      expect(read.dataIn).toEqual(data);
      expect(built).toBe(0);
    } finally {
      globalThis.AbortController = Original;
      await device.close();
    }
  });

  it('a kernel TMR aborts the default handler on an asynchronous backend, signal included', async () => {
    const inner = memory();
    let readStarted!: () => void;
    const started = new Promise<void>((resolve) => {
      readStarted = resolve;
    });
    let seen: AbortSignal | undefined;
    const backend: BlockBackend = {
      blockSize: 512,
      blockCount: 2048,
      read: (_lba, _into, signal) => {
        seen = signal;
        readStarted();
        return new Promise((_resolve, reject) => {
          signal?.addEventListener('abort', () => reject(signal.reason));
        });
      },
      write: (lba, data, options) => inner.write(lba, data, options),
      flush: () => {},
    };
    const device = await open({ backend });
    try {
      const pending = harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 });
      await started;
      expect(seen?.aborted).toBe(false);
      harness.simulator(device).tmr();
      const result = await pending;
      expect(result.aborted).toBe(true);
      expect(seen?.aborted).toBe(true);
      expect(device.stats().aborted).toBe(1);
    } finally {
      await device.close();
    }
  });

  it('cmd.aborted reports a TMR that came before the handler looked, and the signal agrees', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let arrived!: () => void;
    const running = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const seen: Array<boolean | undefined> = [];
    const handler: Handler = async (cmd) => {
      seen.push(cmd.aborted);
      arrived();
      await gate;
      seen.push(cmd.aborted, cmd.signal.aborted);
      return { status: TASK_ABORTED };
    };
    const device = await openDevice({
      name: 'x',
      handler,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    try {
      const pending = harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 });
      await running;
      harness.simulator(device).tmr();
      await new Promise((resolve) => setTimeout(resolve, 20));
      release();
      await pending;
      expect(seen).toEqual([false, true, true]);
    } finally {
      await device.close();
    }
  });
});

describe('close', () => {
  it('drains commands in flight when they finish in time', async () => {
    // The commands finish only once close() has begun (a timer would race a loaded machine).
    const release: Array<() => void> = [];
    const handler: Handler = () => new Promise((resolve) => release.push(() => resolve({ status: GOOD })));
    const device = await openDevice({
      name: 'x',
      handler,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    const pending = Array.from({ length: 5 }, (_, i) =>
      harness.submit(device, { cdb: rw10(0x2a, i, 1), dataOut: new Uint8Array(512) }),
    );
    await vi.waitFor(() => expect(device.stats().inFlight).toBe(5));
    const closed = device.close({ drainTimeoutMs: 5000 });
    setTimeout(() => {
      for (const finish of release) finish();
    }, 30);
    await closed;
    expect((await Promise.all(pending)).map((r) => r.status)).toEqual([GOOD, GOOD, GOOD, GOOD, GOOD]);
    expect(await leftovers()).toEqual([]);
  });

  it('completes commands still in flight at the deadline with TASK ABORTED and aborts their signal', async () => {
    let aborted = 0;
    const hung: Handler = (cmd) =>
      new Promise(() => {
        cmd.signal.addEventListener('abort', () => aborted++);
      });
    const device = await openDevice({
      name: 'x',
      handler: hung,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    const pending = [
      harness.submit(device, { cdb: rw10(0x28, 0, 1), dataInLength: 512 }),
      harness.submit(device, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) }),
    ];
    await new Promise((resolve) => setTimeout(resolve, 5));
    await device.close({ drainTimeoutMs: 20 });
    const results = await Promise.all(pending);
    expect(results.map((r) => r.status)).toEqual([TASK_ABORTED, TASK_ABORTED]);
    expect(aborted).toBe(2);
    expect(device.stats()).toMatchObject({ aborted: 2, inFlight: 0 });
    expect(device.state).toBe('closed');
    expect(await leftovers()).toEqual([]);
  });

  it('a backend still reading into the ring at the deadline: answered with KEEP_BUF, its blocks kept until it ends', async () => {
    let finish: (() => void) | undefined;
    let lent: Uint8Array | undefined;
    const inner = memory();
    // A read that cannot be cancelled: it fills the ring's memory whenever it ends.
    const slow: BlockBackend = {
      blockSize: inner.blockSize,
      blockCount: inner.blockCount,
      read: (lba, into) => {
        if (lba !== 7) return inner.read(lba, into);
        lent = into;
        return new Promise<void>((resolve) => {
          finish = () => {
            into.fill(0xee);
            resolve();
          };
        });
      },
      write: (lba, data, options) => inner.write(lba, data, options),
      flush: () => {},
    };
    const device = await open({ backend: slow });
    const sim = harness.simulator(device);
    const slowRead = harness.submit(device, { cdb: rw10(0x28, 7, 1), dataInLength: 512 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(lent).toBeDefined();
    const started = performance.now();
    await device.close({ drainTimeoutMs: 30 });
    expect(performance.now() - started).toBeLessThan(1000);
    expect((await slowRead).status).toBe(TASK_ABORTED);
    expect(sim.kept).toHaveLength(1); // the kernel keeps its blocks (and its id)
    expect(lent!.length).toBe(512); // still mapped
    finish!();
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(sim.kept).toEqual([]); // given back once the backend is done
    expect(lent!.length).toBe(0); // and only then unmapped
    expect(await leftovers()).toEqual([]);
  });

  it('is idempotent and shares one close between concurrent calls', async () => {
    const device = await open();
    const first = device.close();
    expect(device.close()).toBe(first);
    await first;
    await device.close();
    expect(device.state).toBe('closed');
    expect(await leftovers()).toEqual([]);
  });

  it('waits for a setup in progress, then tears it down (a signal during open)', async () => {
    const device = createDevice({ name: 'vol0', backend: memory(), platform: harness.platform });
    const opening = device.open();
    const closing = device.close();
    await opening;
    await closing;
    expect(device.state).toBe('closed');
    expect(await leftovers()).toEqual([]);
    await expect(device.open()).rejects.toThrow(/already opened/);
  });

  it('reports objects it could not remove with TeardownError, after trying the rest', async () => {
    const device = await open();
    harness.kernel.failNext('rmdir', /\/lun\/lun_0$/, 'EBUSY');
    const error = await device.close().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TeardownError);
    expect((error as TeardownError).errors.length).toBeGreaterThan(0);
  });
});

describe('rollback', () => {
  const steps = ['backstore', 'uio', 'ring', 'queue-depth', 'target', 'lun', 'disk', 'node'] as const;
  const method: Record<(typeof steps)[number], keyof DevicePlatform> = {
    backstore: 'createBackstore',
    uio: 'findUio',
    ring: 'openRing',
    'queue-depth': 'setQueueDepth',
    target: 'createTarget',
    lun: 'createLun',
    disk: 'waitForDisk',
    node: 'makeNode',
  };

  it.each(steps)('undoes every earlier step when %s fails', async (step) => {
    const failing = new Proxy(harness.platform, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver);
        if (key !== method[step]) return value;
        return () => {
          if (step === 'ring') throw new Error(`injected ${step} failure`);
          return Promise.reject(new Error(`injected ${step} failure`));
        };
      },
    });
    const error = await openDevice({
      name: 'vol0',
      backend: memory(),
      platform: failing,
      nodeDir: join(harness.nodeDir, 'sub'),
      nodeKind: 'symlink',
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeviceSetupError);
    expect(error).toMatchObject({ step, rollbackErrors: [] });
    expect(((error as Error).cause as Error).message).toBe(`injected ${step} failure`);
    expect(await leftovers()).toEqual([]);
    expect(await readdir(harness.nodeDir)).toEqual([]);
  });

  it('undoes the backstore when the kernel refuses enable (a real configfs failure)', async () => {
    harness.kernel.failNext('writeFile', '*/enable', 'ENODEV');
    await expect(open()).rejects.toMatchObject({ step: 'backstore' });
    expect(await leftovers()).toEqual([]);
  });

  it('undoes the LUN and backstore when linking the LUN fails', async () => {
    harness.kernel.failNext('symlink', /\/lun\/lun_0\/vol0$/, 'ENOMEM');
    await expect(open()).rejects.toMatchObject({ step: 'lun' });
    expect(await leftovers()).toEqual([]);
  });
});

describe('several devices', () => {
  it('serves two devices in one process independently', async () => {
    const a = await open({ name: 'a' });
    const b = await open({ name: 'b', backend: memory(4096, 64) });
    try {
      expect(a.diskPath).not.toBe(b.diskPath);
      expect(a.uioPath).not.toBe(b.uioPath);
      expect(a.identity.serial).not.toBe(b.identity.serial);
      await harness.submit(a, { cdb: rw10(0x2a, 1, 1), dataOut: new Uint8Array(512).fill(1) });
      await harness.submit(b, { cdb: rw10(0x2a, 1, 1), dataOut: new Uint8Array(4096).fill(2) });
      const ra = await harness.submit(a, { cdb: rw10(0x28, 1, 1), dataInLength: 512 });
      const rb = await harness.submit(b, { cdb: rw10(0x28, 1, 1), dataInLength: 4096 });
      expect(ra.dataIn.every((x) => x === 1)).toBe(true);
      expect(rb.dataIn.every((x) => x === 2)).toBe(true);
      await a.close();
      // b still serves after a is gone
      expect((await harness.submit(b, { cdb: Uint8Array.of(0, 0, 0, 0, 0, 0) })).status).toBe(GOOD);
    } finally {
      await a.close();
      await b.close();
    }
    expect(await leftovers()).toEqual([]);
  });

  it('opens devices concurrently on distinct HBAs', async () => {
    const devices = await Promise.all(['c0', 'c1', 'c2'].map((name) => open({ name })));
    try {
      expect(new Set(devices.map((d) => d.hba)).size).toBe(3);
      expect(new Set(devices.map((d) => d.diskPath)).size).toBe(3);
    } finally {
      await Promise.all(devices.map((d) => d.close()));
    }
    expect(await leftovers()).toEqual([]);
  });

  it('shares a loopback target named by WWN: it goes with its last LUN', async () => {
    const fabric = { type: 'loopback', wwn: 'naa.5001405000000abc' } as const;
    const a = await open({ name: 'a', fabric, lun: 0 });
    const b = await open({ name: 'b', fabric, lun: 1 });
    try {
      await a.close();
      expect((await harness.submit(b, { cdb: inquiry(), dataInLength: 96 })).status).toBe(GOOD);
      expect(await leftovers()).toContain('loopback/naa.5001405000000abc/tpgt_1/lun/lun_1');
    } finally {
      await b.close();
    }
    expect(await leftovers()).toEqual([]);
  });

  it('hosts several LUNs on one loopback Target', async () => {
    const target = await Target.open({ name: 'shared', platform: harness.platform });
    const [d0, d1] = await Promise.all([
      target.openDevice({ name: 'lun-a', backend: memory() }),
      target.openDevice({ name: 'lun-b', backend: memory() }),
    ]);
    expect([d0.luns[0]!.lun, d1.luns[0]!.lun].sort()).toEqual([0, 1]);
    expect(d0.luns[0]!.wwn).toBe(target.wwn);
    expect(d1.luns[0]!.wwn).toBe(target.wwn);
    expect(d0!.diskPath).not.toBe(d1!.diskPath);
    expect(target.devices).toHaveLength(2);
    const freed = d0.luns[0]!.lun;
    await d0!.close();
    expect(target.devices).toHaveLength(1);
    expect((await harness.submit(d1!, { cdb: inquiry(), dataInLength: 96 })).status).toBe(GOOD);
    const d2 = await target.openDevice({ name: 'lun-c', backend: memory() });
    expect(d2.luns[0]!.lun).toBe(freed); // the lowest free LUN is reused
    await target.close();
    expect(d1!.state).toBe('closed');
    expect(d2.state).toBe('closed');
    expect(await leftovers()).toEqual([]);
    await expect(target.openDevice({ name: 'late', backend: memory() })).rejects.toThrow(/closed/);
  });

  it('exports over iSCSI (and loopback) at once', async () => {
    const device = await open({
      fabric: [{ type: 'loopback' }, { type: 'iscsi', portal: '127.0.0.1:3260' }],
    });
    try {
      expect(device.luns.map((l) => l.fabric)).toEqual(['loopback', 'iscsi']);
      const iqn = device.luns[1]!.wwn;
      const snapshot = await harness.kernel.snapshot();
      expect(snapshot).toContain(`iscsi/${iqn}/tpgt_1/np/127.0.0.1:3260`);
      expect(device.diskPath).toBeDefined();
    } finally {
      await device.close();
    }
    expect(await leftovers()).toEqual([]);
  });

  it('exports over iSCSI to listed initiators only, with CHAP and mutual CHAP', async () => {
    const client = 'iqn.1994-05.com.redhat:client';
    const other = 'iqn.1994-05.com.redhat:other';
    const device = await open({
      fabric: {
        type: 'iscsi',
        portal: '192.0.2.1:3260',
        initiators: [
          { iqn: client, chap: { userid: 'u', password: 'p1', mutualUserid: 't', mutualPassword: 'p2' } },
          { iqn: other },
        ],
      },
    });
    try {
      const tpg = `${harness.kernel.roots.configfs}/target/iscsi/${device.luns[0]!.wwn}/tpgt_1`;
      const writes = harness.kernel.journal.filter((line) => line.startsWith(`write ${tpg}/`));
      expect(writes).toEqual([
        `write ${tpg}/attrib/generate_node_acls=0`,
        `write ${tpg}/attrib/authentication=1`,
        `write ${tpg}/acls/${client}/auth/userid=u`,
        `write ${tpg}/acls/${client}/auth/password=p1`,
        `write ${tpg}/acls/${client}/auth/userid_mutual=t`,
        `write ${tpg}/acls/${client}/auth/password_mutual=p2`,
        `write ${tpg}/enable=1`,
      ]);
      expect(await harness.kernel.exists(`${tpg}/np/192.0.2.1:3260`)).toBe(true);
      expect(await harness.kernel.exists(`${tpg}/acls/${other}/lun_0`)).toBe(true);
    } finally {
      await device.close();
    }
    expect(await leftovers()).toEqual([]);
  });

  it('several devices behind one iSCSI target: each adds its LUN, mapped for the ACLs; the target goes with the last', async () => {
    const iqn = 'iqn.2003-01.org.example:shared';
    const client = 'iqn.1994-05.com.redhat:client';
    const fabric = { type: 'iscsi', portal: '127.0.0.1:3260', iqn, initiators: [{ iqn: client }] } as const;
    const tpg = `${harness.kernel.roots.configfs}/target/iscsi/${iqn}/tpgt_1`;
    const first = await open({ name: 'shared-a', fabric });
    const second = await open({ name: 'shared-b', fabric });
    try {
      expect([first.luns[0]!.lun, second.luns[0]!.lun]).toEqual([0, 1]);
      expect(await harness.kernel.realpath(`${tpg}/acls/${client}/lun_1/tpg_lun_1`)).toBe(`${tpg}/lun/lun_1`);
      await first.close();
      // The second one's LUN and mapping stay, and it keeps serving.
      expect(await harness.kernel.exists(`${tpg}/lun/lun_0`)).toBe(false);
      expect(await harness.kernel.exists(`${tpg}/acls/${client}/lun_0`)).toBe(false);
      expect(await harness.kernel.exists(`${tpg}/acls/${client}/lun_1`)).toBe(true);
      expect((await harness.submit(second, { cdb: inquiry(), dataInLength: 96 })).status).toBe(GOOD);
    } finally {
      await first.close();
      await second.close();
    }
    expect(await leftovers()).toEqual([]);
  });

  it('serves no fabric at all when asked (external wiring)', async () => {
    const device = await open({ fabric: { type: 'none' } });
    try {
      expect(device.luns).toEqual([]);
      expect(device.diskPath).toBeUndefined();
      expect((await harness.submit(device, { cdb: inquiry(), dataInLength: 96 })).status).toBe(GOOD);
    } finally {
      await device.close();
    }
  });
});

describe('third-party copy', () => {
  const xcopy = (list: Uint8Array) => {
    const cdb = new Uint8Array(16);
    cdb[0] = 0x83;
    new DataView(cdb.buffer).setUint32(10, list.length);
    return cdb;
  };
  const memoryDevice = (name: string, thirdPartyCopy?: boolean) =>
    openDevice({
      name,
      backend: new MemoryBackend({ blockSize: 512, blockCount: 64 }),
      platform: harness.platform,
      ...(thirdPartyCopy === undefined ? {} : { unit: { thirdPartyCopy } }),
    });

  it('is on by default: EXTENDED COPY to one device copies from another of this process, until it closes', async () => {
    const source = await memoryDevice('src');
    const destination = await memoryDevice('dst');
    const data = Uint8Array.from({ length: 1024 }, (_, i) => i & 0xff);
    await harness.submit(source, { cdb: rw10(0x2a, 3, 2), dataOut: data });
    const list = encodeExtendedCopyParameters({
      targets: [source, destination].map((d) => ({ designator: d.unit!.config.naa, blockLength: 512 })),
      segments: [{ source: 0, destination: 1, blocks: 2, sourceLba: 3, destinationLba: 10 }],
    });
    expect((await harness.submit(destination, { cdb: xcopy(list), dataOut: list })).status).toBe(GOOD);
    const read = await harness.submit(destination, { cdb: rw10(0x28, 10, 2), dataInLength: 1024 });
    expect(read.dataIn).toEqual(data);
    await source.close();
    // A closed device is out of reach: COPY TARGET DEVICE NOT REACHABLE (0D/02).
    const after = await harness.submit(destination, { cdb: xcopy(list), dataOut: list });
    expect(after.status).toBe(CHECK_CONDITION);
    expect([decodeSense(after.sense).asc, decodeSense(after.sense).ascq]).toEqual([0x0d, 0x02]);
    await destination.close();
  });

  it('unit.thirdPartyCopy false leaves EXTENDED COPY out (INVALID COMMAND OPERATION CODE)', async () => {
    const device = await memoryDevice('off', false);
    const list = encodeExtendedCopyParameters({
      targets: [{ designator: device.unit!.config.naa, blockLength: 512 }],
      segments: [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }],
    });
    const answer = await harness.submit(device, { cdb: xcopy(list), dataOut: list });
    expect(answer.status).toBe(CHECK_CONDITION);
    expect([decodeSense(answer.sense).asc, decodeSense(answer.sense).ascq]).toEqual([0x20, 0x00]);
    await device.close();
  });

  it('rejects a non-boolean unit.thirdPartyCopy', async () => {
    await expect(
      openDevice({
        name: 'bad',
        backend: new MemoryBackend({ blockSize: 512, blockCount: 8 }),
        platform: harness.platform,
        unit: { thirdPartyCopy: 'yes' as unknown as boolean },
      }),
    ).rejects.toThrow(InvalidDeviceOptionError);
  });
});

describe('commands after the drain deadline', () => {
  it('still runs them (the kernel flushes the disk while the LUN goes), each bounded by the timeout', async () => {
    // Writes hang forever; everything else is answered at once.
    const handler: Handler = (cmd) => (cmd.opcode === 0x2a ? new Promise(() => {}) : { status: GOOD });
    const device = await openDevice({
      name: 'x',
      handler,
      size: 1 << 20,
      blockSize: 512,
      platform: harness.platform,
    });
    const hungBefore = harness.submit(device, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
    await new Promise((resolve) => setTimeout(resolve, 5));
    // Commands the "kernel" sends while the LUN is being removed, after the deadline.
    const platform = harness.platform;
    const realRemove = platform.removeLun;
    const late: Promise<{ status: number }>[] = [];
    platform.removeLun = async (lun) => {
      await new Promise((resolve) => setTimeout(resolve, 30));
      late.push(harness.submit(device, { cdb: Uint8Array.of(0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0) })); // SYNC CACHE
      late.push(harness.submit(device, { cdb: rw10(0x2a, 1, 1), dataOut: new Uint8Array(512) })); // hangs
      await Promise.all(late);
      return realRemove(lun);
    };
    try {
      await device.close({ drainTimeoutMs: 10 });
    } finally {
      platform.removeLun = realRemove;
    }
    expect((await hungBefore).status).toBe(TASK_ABORTED);
    expect((await Promise.all(late)).map((r) => r.status)).toEqual([GOOD, TASK_ABORTED]);
    expect(await leftovers()).toEqual([]);
  });
});
