import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ABI } from './abi.js';
import type { RingCommand } from './command.js';
import {
  CommandAbortedError,
  CorruptRingError,
  MailboxError,
  type NativeError,
  RingClosedError,
  RingResetError,
  RingUsageError,
} from './errors.js';
import { readUioMapSize, TcmuRing } from './ring.js';
import {
  createRamDisk,
  KERNEL_FLAGS,
  KernelSimulator,
  ringConformanceCases,
  type SimulatorOptions,
} from './testing/index.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(simOptions: SimulatorOptions = {}, maxInFlight?: number) {
  const sim = new KernelSimulator(simOptions);
  cleanups.push(() => sim.close());
  const ring = TcmuRing.open(sim.ringOptions(maxInFlight === undefined ? {} : { maxInFlight }));
  cleanups.push(() => ring.close());
  return { sim, ring };
}

/** Byte equality without vitest's slow element-wise diff (falls back to it on mismatch). */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  if (!Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected)) {
    expect(actual).toEqual(expected);
  }
  expect(actual.length).toBe(expected.length);
}

function until(check: () => void): Promise<void> {
  return vi.waitFor(check, { timeout: 2000, interval: 2 });
}

/** Collects commands without completing them. */
function hold(ring: TcmuRing): RingCommand[] {
  const held: RingCommand[] = [];
  ring.on('command', (command) => held.push(command));
  return held;
}

function read10(lba: number, blocks: number): Uint8Array {
  const cdb = Uint8Array.of(0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  new DataView(cdb.buffer).setUint32(2, lba);
  new DataView(cdb.buffer).setUint16(7, blocks);
  return cdb;
}

function filled(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value);
}

const PRESETS = [
  ['current kernel (OOOC, READ_LEN, TMR, KEEP_BUF)', KERNEL_FLAGS.current],
  ['OOOC only', KERNEL_FLAGS.oooOnly],
  ['no capabilities (in-order)', KERNEL_FLAGS.none],
] as const;

describe.each(PRESETS)('conformance against the simulator: %s', (_name, flags) => {
  for (const testCase of ringConformanceCases) {
    it(testCase.name, async () => {
      const { sim, ring } = setup({ flags });
      const disk = createRamDisk({ blocks: 512 });
      disk.serve(ring);
      await testCase.run({ blockSize: disk.blockSize, blocks: disk.blocks, submit: (r) => sim.submit(r) });
      expect(sim.broken).toBeUndefined();
    });
  }
});

describe('open', () => {
  it('reads the capability flags from the mailbox', () => {
    expect(setup({ flags: KERNEL_FLAGS.current }).ring.flags).toEqual({
      ooo: true,
      readLen: true,
      tmr: true,
      keepBuf: true,
    });
    expect(setup({ flags: KERNEL_FLAGS.oooOnly }).ring.flags).toEqual({
      ooo: true,
      readLen: false,
      tmr: false,
      keepBuf: false,
    });
  });

  it('refuses a mailbox that is not version 2', () => {
    const sim = new KernelSimulator({ version: 1 });
    cleanups.push(() => sim.close());
    expect(() => TcmuRing.open(sim.ringOptions())).toThrow(MailboxError);
    expect(() => TcmuRing.open(sim.ringOptions())).toThrow(/version is 1/);
  });

  it('refuses a ring that does not fit the map', () => {
    const sim = new KernelSimulator();
    cleanups.push(() => sim.close());
    sim.view.setUint32(ABI.mailbox.cmdrSize, sim.mapSize, true);
    expect(() => TcmuRing.open(sim.ringOptions())).toThrow(MailboxError);
  });

  it('rejects a bad maxInFlight and a bad mapSize', () => {
    const sim = new KernelSimulator();
    cleanups.push(() => sim.close());
    expect(() => TcmuRing.open(sim.ringOptions({ maxInFlight: 0 }))).toThrow(RingUsageError);
    expect(() => TcmuRing.open({ ...sim.ringOptions(), mapSize: 100 })).toThrow(RingUsageError);
  });
});

describe('ring walk', () => {
  it('steps over an 8-byte PAD at the wrap and keeps working across many wraps', async () => {
    const cmdrSize = 1024;
    const { sim, ring } = setup({ cmdrSize, startOffset: cmdrSize - 8 });
    const disk = createRamDisk({ blocks: 64 });
    disk.serve(ring);
    const first = await sim.submit({ cdb: read10(0, 1), dataInLength: 512 });
    expect(first.status).toBe(0);
    // The PAD the simulator wrote at the end of the ring is 8 bytes long.
    const padAt = sim.cmdrOffset + cmdrSize - 8;
    expect(sim.view.getUint32(padAt, true)).toBe(8 | ABI.op.pad);
    for (let round = 0; round < 40; round++) {
      const results = await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          sim.submit({
            cdb: Uint8Array.of(0x2a, 0, 0, 0, 0, i, 0, 0, 1, 0),
            dataOut: filled(512, round + i),
          }),
        ),
      );
      for (const result of results) expect(result.status).toBe(0);
    }
    expect(sim.broken).toBeUndefined();
  });

  it('holds commands back while the ring is full and delivers them as space frees', async () => {
    const { sim, ring } = setup({ cmdrSize: 512 });
    const held = hold(ring);
    const pending = Array.from({ length: 10 }, () => sim.submit({ cdb: new Uint8Array(6) }));
    await until(() => expect(held.length).toBe(4)); // 4 x 120 bytes fit in 511
    expect(sim.queued).toBe(6);
    while (held.length > 0) ring.complete(held.shift()!, 0);
    await until(() => expect(held.length).toBeGreaterThan(0));
    ring.removeAllListeners('command');
    ring.on('command', (command) => ring.complete(command, 0));
    for (const command of held.splice(0)) ring.complete(command, 0);
    const results = await Promise.all(pending);
    expect(results.map((r) => r.status)).toEqual(new Array(10).fill(0));
  });

  it('reuses the lowest free cmd_id like xa_alloc', async () => {
    const { sim, ring } = setup();
    const held = hold(ring);
    const results = [0, 1, 2].map(() => sim.submit({ cdb: new Uint8Array(6) }));
    await until(() => expect(held.map((c) => c.id)).toEqual([1, 2, 3]));
    ring.complete(held[1]!, 0);
    await results[1];
    void sim.submit({ cdb: new Uint8Array(6) });
    await until(() => expect(held.map((c) => c.id)).toEqual([1, 2, 3, 2]));
    ring.complete(held[0]!, 0);
    ring.complete(held[2]!, 0);
    ring.complete(held[3]!, 0);
    await Promise.all([results[0], results[2]]);
  });

  it('respects maxInFlight and resumes fetching as completions free room', async () => {
    const { sim, ring } = setup({}, 4);
    const held = hold(ring);
    const results = Array.from({ length: 20 }, () => sim.submit({ cdb: new Uint8Array(6) }));
    await until(() => expect(held.length).toBe(4));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(ring.inFlight).toBe(4);
    let completed = 0;
    while (completed < 20) {
      await until(() => expect(held.length).toBeGreaterThan(completed));
      expect(ring.inFlight).toBeLessThanOrEqual(4);
      ring.complete(held[completed++]!, 0);
    }
    expect((await Promise.all(results)).length).toBe(20);
  });

  it('publishes a burst of synchronous completions with one release-store and one kick', async () => {
    const { sim, ring } = setup({ cmdrSize: 65536 - 128 });
    const results = Array.from({ length: 100 }, () => sim.submit({ cdb: new Uint8Array(6) }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    ring.on('command', (command) => ring.complete(command, 0));
    await Promise.all(results);
    expect(sim.kicks).toBe(1);
  });

  it('serves hundreds of concurrent commands', async () => {
    const { sim, ring } = setup({ dataSize: 4 << 20 });
    const disk = createRamDisk({ blocks: 2048 });
    disk.serve(ring);
    const writes = Array.from({ length: 300 }, (_, i) =>
      sim.submit({
        cdb: Uint8Array.of(0x2a, 0, 0, 0, (i * 4) >> 8, (i * 4) & 0xff, 0, 0, 4, 0),
        dataOut: filled(2048, i),
      }),
    );
    for (const result of await Promise.all(writes)) expect(result.status).toBe(0);
    const reads = await Promise.all(
      Array.from({ length: 300 }, (_, i) => sim.submit({ cdb: read10(i * 4, 4), dataInLength: 2048 })),
    );
    reads.forEach((result, i) => {
      expectBytes(result.dataIn, filled(2048, i));
    });
  });
});

describe('out-of-order and in-order completion', () => {
  for (const [name, flags] of [
    ['OOOC', KERNEL_FLAGS.current],
    ['in-order', KERNEL_FLAGS.none],
  ] as const) {
    it(`${name}: any completion order returns each command its own data (property)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc
            .integer({ min: 1, max: 24 })
            .chain((n) =>
              fc.tuple(
                fc.constant(n),
                fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n }),
              ),
            ),
          fc.array(fc.boolean(), { minLength: 24, maxLength: 24 }),
          async ([n, order], flushBetween) => {
            const sim = new KernelSimulator({ flags, cmdrSize: 4096 }); // 24 x 128-byte entries fit
            const ring = TcmuRing.open(sim.ringOptions());
            try {
              const held = hold(ring);
              const results = Array.from({ length: n }, (_, i) =>
                sim.submit({ cdb: read10(i, 1), dataInLength: 512 }),
              );
              await until(() => expect(held.length).toBe(n));
              for (const [step, index] of order.entries()) {
                const command = held[index]!;
                const lba = new DataView(command.cdb.buffer, command.cdb.byteOffset).getUint32(2);
                command.writeDataIn(filled(512, lba + 1));
                ring.complete(command, 0);
                if (flushBetween[step]) await new Promise((resolve) => setImmediate(resolve));
              }
              const done = await Promise.all(results);
              done.forEach((result, i) => {
                expectBytes(result.dataIn, filled(512, i + 1));
              });
              expect(sim.broken).toBeUndefined();
            } finally {
              await ring.close();
              await sim.close();
            }
          },
        ),
        { numRuns: 40 },
      );
    });
  }

  it('in-order: a later completion waits until the older command completes', async () => {
    const { sim, ring } = setup({ flags: KERNEL_FLAGS.none });
    const held = hold(ring);
    const first = sim.submit({ cdb: new Uint8Array(6) });
    const second = sim.submit({ cdb: new Uint8Array(6) });
    await until(() => expect(held.length).toBe(2));
    let secondDone = false;
    void second.then(() => {
      secondDone = true;
    });
    ring.complete(held[1]!, 0);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(secondDone).toBe(false);
    ring.complete(held[0]!, 0);
    await Promise.all([first, second]);
  });
});

describe('data buffers', () => {
  it('handles the largest commands: dozens of iovecs, partial last iovec, gather and scatter', async () => {
    const { sim, ring } = setup({ dataSize: 256 * 4096 });
    const held = hold(ring);
    // Occupy 64 single-block commands, free every other one: the big command
    // then gets 32 non-adjacent blocks (32 iovecs) before the contiguous rest.
    const small = Array.from({ length: 64 }, () => sim.submit({ cdb: read10(0, 8), dataInLength: 4096 }));
    await until(() => expect(held.length).toBe(64));
    for (let i = 0; i < 64; i += 2) ring.complete(held[i]!, 0, undefined, 0);
    await Promise.all(small.filter((_, i) => i % 2 === 0));
    const payload = Uint8Array.from({ length: 40 * 4096 - 100 }, (_, i) => (i * 7) & 0xff);
    const write = sim.submit({ cdb: Uint8Array.of(0x2a, 0, 0, 0, 0, 0, 0, 1, 64, 0), dataOut: payload });
    await until(() => expect(held.length).toBe(65));
    const big = held[64]!;
    expect(big.dataOutSegments!.length).toBe(33);
    expect(big.dataOutLength).toBe(payload.length);
    expectBytes(big.dataOut, payload);
    ring.complete(big, 0);
    expect((await write).status).toBe(0);
    const read = sim.submit({ cdb: read10(0, 80), dataInLength: payload.length });
    await until(() => expect(held.length).toBe(66));
    const reader = held[65]!;
    // Scatter in odd-sized pieces that straddle iovec boundaries.
    for (let offset = 0; offset < payload.length; offset += 3001) {
      reader.writeDataIn(payload.subarray(offset, offset + 3001), offset);
    }
    ring.complete(reader, 0);
    expectBytes((await read).dataIn, payload);
    for (let i = 1; i < 64; i += 2) ring.complete(held[i]!, 0, undefined, 0);
  });

  it('serves zero-length transfers', async () => {
    const { sim, ring } = setup();
    const held = hold(ring);
    const result = sim.submit({ cdb: read10(0, 0), dataInLength: 0 });
    await until(() => expect(held.length).toBe(1));
    expect(held[0]!.dataInLength).toBe(0);
    expect(held[0]!.dataOut.length).toBe(0);
    expect(held[0]!.writeDataIn(Uint8Array.of(1, 2, 3))).toBe(0);
    ring.complete(held[0]!, 0, undefined, 0);
    expect((await result).dataIn.length).toBe(0);
  });

  it('with READ_LEN: the initiator gets exactly the produced bytes', async () => {
    const { sim, ring } = setup({ flags: KERNEL_FLAGS.current });
    ring.on('command', (command) => {
      command.writeDataIn(filled(100, 0xab));
      ring.complete(command, 0);
    });
    const result = await sim.submit({ cdb: read10(0, 1), dataInLength: 4096 });
    expectBytes(result.dataIn, filled(100, 0xab));
    expect(result.readLen).toBe(100);
  });

  it('without READ_LEN: stale bytes beyond the produced data are zeroed', async () => {
    const { sim, ring } = setup({ flags: KERNEL_FLAGS.oooOnly });
    let produce = 4096;
    ring.on('command', (command) => {
      if (command.dataOutLength && command.cdb[0] === 0x2a) return ring.complete(command, 0);
      command.writeDataIn(filled(produce, 0xab));
      ring.complete(command, 0);
    });
    // Leave a pattern in the data block, then read 100 bytes through the same block.
    await sim.submit({ cdb: Uint8Array.of(0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0), dataOut: filled(4096, 0xee) });
    produce = 100;
    const result = await sim.submit({ cdb: read10(0, 8), dataInLength: 4096 });
    expect(result.dataIn.length).toBe(4096);
    expectBytes(result.dataIn.subarray(0, 100), filled(100, 0xab));
    expectBytes(result.dataIn.subarray(100), filled(3996, 0));
  });

  it('readLen 0 zeroes the whole buffer even with READ_LEN (the kernel ignores read_len 0)', async () => {
    const { sim, ring } = setup({ flags: KERNEL_FLAGS.current });
    ring.on('command', (command) => {
      if (command.cdb[0] === 0x2a) ring.complete(command, 0);
      else ring.complete(command, 0, undefined, 0);
    });
    await sim.submit({ cdb: Uint8Array.of(0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0), dataOut: filled(4096, 0xee) });
    const result = await sim.submit({ cdb: read10(0, 8), dataInLength: 4096 });
    expectBytes(result.dataIn, filled(4096, 0));
  });

  it('CHECK CONDITION carries the sense bytes and no data', async () => {
    const { sim, ring } = setup();
    const sense = Uint8Array.of(0x70, 0, 0x03, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11, 0x00);
    ring.on('command', (command) => ring.complete(command, 0x02, sense));
    const result = await sim.submit({ cdb: read10(0, 1), dataInLength: 512 });
    expect(result.status).toBe(0x02);
    expect(result.sense.subarray(0, sense.length)).toEqual(sense);
    expect(result.sense.subarray(sense.length)).toEqual(new Uint8Array(96 - sense.length));
    expect(result.dataIn.length).toBe(0);
  });

  it('completions made in one tick keep each its own status, sense and Data-In', async () => {
    const { sim, ring } = setup();
    const held = hold(ring);
    const results = Array.from({ length: 24 }, (_, i) =>
      sim.submit({ cdb: read10(i, 1), dataInLength: 512 }),
    );
    await until(() => expect(held).toHaveLength(24));
    // Out of arrival order, odd ones CHECK CONDITION with a sense naming the command.
    for (const command of [...held].reverse()) {
      const lba = command.cdb[5]!;
      if (lba % 2 === 1) {
        ring.complete(command, 0x02, Uint8Array.of(0x70, 0, 0x03, 0, 0, 0, 0, 10, 0, 0, 0, 0, lba, 0), 0);
      } else {
        command.writeDataIn(filled(512, lba));
        ring.complete(command, 0x00);
      }
    }
    for (const [lba, pending] of results.entries()) {
      const result = await pending;
      if (lba % 2 === 1) {
        expect(result.status).toBe(0x02);
        expect(result.sense[12]).toBe(lba);
        expect(result.sense.subarray(14)).toEqual(new Uint8Array(96 - 14));
      } else {
        expect(result.status).toBe(0x00);
        expectBytes(result.dataIn, filled(512, lba));
      }
    }
  });

  it('BIDI: Data-Out from the main iovecs, Data-In into the BIDI iovecs', async () => {
    const { sim, ring } = setup();
    ring.on('command', (command) => {
      expect(command.bidirectional).toBe(true);
      expectBytes(command.dataOut, filled(1024, 0x11));
      expect(command.dataInLength).toBe(1024);
      command.writeDataIn(filled(1024, 0x22));
      ring.complete(command, 0);
    });
    const result = await sim.submit({
      cdb: Uint8Array.of(0x53, 0, 0, 0, 0, 0, 0, 0, 2, 0),
      dataOut: filled(1024, 0x11),
      dataInLength: 1024,
    });
    expectBytes(result.dataIn, filled(1024, 0x22));
  });

  it('dataInBuffer views fill in place and count as produced', async () => {
    const { sim, ring } = setup();
    ring.on('command', (command) => {
      const buffer = command.dataInBuffer;
      for (const segment of Array.isArray(buffer) ? buffer : [buffer]) segment.fill(0x5a);
      ring.complete(command, 0);
    });
    expectBytes((await sim.submit({ cdb: read10(0, 3), dataInLength: 1536 })).dataIn, filled(1536, 0x5a));
  });
});

describe('TMR, unknown ops and API misuse', () => {
  it('turns a TMR entry into aborts of the named commands', async () => {
    const { sim, ring } = setup({ flags: KERNEL_FLAGS.current });
    const held = hold(ring);
    const notices: unknown[] = [];
    ring.on('tmr', (notice) => notices.push(notice));
    const results = [0, 1, 2].map(() => sim.submit({ cdb: new Uint8Array(6) }));
    await until(() => expect(held.length).toBe(3));
    const signal = held[1]!.signal;
    sim.tmr(ABI.tmrType.abortTask, [held[1]!.id]);
    await until(() => expect(notices).toEqual([{ type: ABI.tmrType.abortTask, commandIds: [2] }]));
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(CommandAbortedError);
    expect(held[0]!.signal.aborted).toBe(false);
    // Aborted commands are still completed; the TMR entry sits behind them and is stepped over.
    for (const command of held) ring.complete(command, command === held[1] ? 0x40 : 0);
    const done = await Promise.all(results);
    expect(done.map((r) => r.aborted)).toEqual([false, true, false]);
    const after = sim.submit({ cdb: new Uint8Array(6) });
    await until(() => expect(held.length).toBe(4));
    ring.complete(held[3]!, 0);
    expect((await after).status).toBe(0);
    expect(sim.broken).toBeUndefined();
  });

  it('flags an unknown opcode with UNKNOWN_OP and steps over it', async () => {
    const { sim, ring } = setup();
    createRamDisk().serve(ring);
    const at = sim.cmdrOffset + sim.head;
    const entry = new Uint8Array(16);
    new DataView(entry.buffer).setUint32(0, 16 | 5, true);
    sim.injectRaw(entry);
    const result = await sim.submit({ cdb: new Uint8Array(6) });
    expect(result.status).toBe(0);
    expect(sim.memory[at + ABI.header.uflags]! & ABI.uflags.unknownOp).toBe(ABI.uflags.unknownOp);
    expect(sim.broken).toBeUndefined();
  });

  it('rejects double completion, bad status and bad readLen', async () => {
    const { sim, ring } = setup();
    const held = hold(ring);
    void sim.submit({ cdb: read10(0, 1), dataInLength: 512 });
    await until(() => expect(held.length).toBe(1));
    const command = held[0]!;
    expect(() => ring.complete(command, 256)).toThrow(RingUsageError);
    expect(() => ring.complete(command, -1)).toThrow(RingUsageError);
    expect(() => ring.complete(command, 0, undefined, 513)).toThrow(RingUsageError);
    expect(() => command.writeDataIn(new Uint8Array(1), 600)).toThrow(RingUsageError);
    ring.complete(command, 0, undefined, 0);
    expect(() => ring.complete(command, 0)).toThrow(/not in flight/);
    expect(() => command.dataOut).toThrow(RingUsageError);
  });

  it('cuts sense longer than the 96-byte ring buffer', async () => {
    const { sim, ring } = setup();
    const sense = Uint8Array.from({ length: 120 }, (_, i) => i + 1);
    ring.on('command', (command) => ring.complete(command, 0x02, sense, 0));
    const result = await sim.submit({ cdb: read10(0, 1), dataInLength: 512 });
    expectBytes(result.sense, sense.subarray(0, ABI.senseBufferSize));
  });
});

describe('corrupt rings', () => {
  function entryBytes(length: number, op: number, id: number, patch?: (view: DataView) => void): Uint8Array {
    const bytes = new Uint8Array(length);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, (length & ~7) | op, true);
    view.setUint16(4, id, true);
    patch?.(view);
    return bytes;
  }

  async function expectCorrupt(
    inject: (sim: KernelSimulator) => void,
    message: RegExp,
    simOptions: SimulatorOptions = {},
  ): Promise<void> {
    const { sim, ring } = setup(simOptions);
    const errors: Error[] = [];
    ring.on('error', (error) => errors.push(error));
    const held = hold(ring);
    inject(sim);
    await until(() => expect(errors.length).toBe(1));
    expect(errors[0]).toBeInstanceOf(CorruptRingError);
    expect(errors[0]!.message).toMatch(message);
    // Safe stop: nothing further is fetched.
    void sim.submit({ cdb: new Uint8Array(6) }).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(held.length).toBe(0);
  }

  function validCmd(sim: KernelSimulator, patch: (view: DataView, entry: number) => void): Uint8Array {
    const entry = sim.cmdrOffset + sim.head;
    return entryBytes(128, ABI.op.cmd, 7, (view) => {
      view.setUint32(ABI.req.iovCnt, 1, true);
      view.setUint32(ABI.req.cdbOff, entry + 112, true);
      view.setUint32(ABI.req.iov, sim.dataOffset, true);
      view.setUint32(ABI.req.iov + 8, 512, true);
      patch(view, entry);
    });
  }

  it('entry length 0', () =>
    expectCorrupt(
      (sim) => sim.injectRaw(entryBytes(16, ABI.op.cmd, 1, (view) => view.setUint32(0, ABI.op.cmd, true))),
      /length is 0/,
    ));
  it('entry longer than what cmd_head published', () =>
    expectCorrupt((sim) => sim.injectRaw(entryBytes(256, ABI.op.pad, 0), 16), /past cmd_head/));
  it('entry crossing the end of the ring', () =>
    expectCorrupt(
      (sim) => sim.injectRaw(entryBytes(64, ABI.op.pad, 0).fill(0, 0, 0), 64),
      /crosses the end/,
      { cmdrSize: 1024, startOffset: 1024 - 16 },
    ));
  it('CMD entry shorter than the response', () =>
    expectCorrupt((sim) => sim.injectRaw(entryBytes(64, ABI.op.cmd, 1)), /below 112/));
  it('cmd_id 0', () =>
    expectCorrupt((sim) => sim.injectRaw(validCmd(sim, (view) => view.setUint16(4, 0, true))), /cmd_id 0/));
  it('absurd iov_cnt', () =>
    expectCorrupt(
      (sim) => sim.injectRaw(validCmd(sim, (view) => view.setUint32(ABI.req.iovCnt, 0xffffffff, true))),
      /do not fit/,
    ));
  it('cdb_off outside the entry', () =>
    expectCorrupt(
      (sim) => sim.injectRaw(validCmd(sim, (view) => view.setUint32(ABI.req.cdbOff + 4, 1, true))),
      /cdb_off/,
    ));
  it('iovec outside the data area', () =>
    expectCorrupt(
      (sim) => sim.injectRaw(validCmd(sim, (view) => view.setUint32(ABI.req.iov + 8, 0x7fffffff, true))),
      /outside the data area/,
    ));
  it('iovec pointing into the command ring', () =>
    expectCorrupt(
      (sim) => sim.injectRaw(validCmd(sim, (view) => view.setUint32(ABI.req.iov, 128, true))),
      /iovec 0/,
    ));
  it('16-byte CDB running past the entry', () =>
    expectCorrupt(
      (sim) =>
        sim.injectRaw(
          validCmd(sim, (view, entry) => {
            view.setUint32(ABI.req.cdbOff, entry + 120, true);
            view.setUint8(120, 0x88);
          }),
        ),
      /CDB runs past/,
    ));
  it('TMR naming more ids than it holds', () =>
    expectCorrupt(
      (sim) =>
        sim.injectRaw(entryBytes(40, ABI.op.tmr, 0, (view) => view.setUint32(ABI.tmr.cmdCnt, 100, true))),
      /names 100 ids/,
    ));
  it('misaligned cmd_head', () => expectCorrupt((sim) => sim.setHead(3), /cmd_head 3/));
  it('cmd_head beyond the ring', () => expectCorrupt((sim) => sim.setHead(sim.cmdrSize + 8), /cmd_head/));
});

describe('recover() after the kernel reset the ring', () => {
  const corrupt = () => {
    const bytes = new Uint8Array(ABI.cmdEntrySize);
    new DataView(bytes.buffer).setUint32(0, 4096 | ABI.op.cmd, true); // runs past cmd_head
    return bytes;
  };

  it.each(
    PRESETS,
  )('serves from cmd_tail 0 again; held commands abort with RingResetError (%s)', async (_name, flags) => {
    const { sim, ring } = setup({ flags });
    const errors: Error[] = [];
    ring.on('error', (error) => errors.push(error));
    const held = hold(ring);
    const first = sim.submit({ cdb: read10(0, 1), dataInLength: 512 });
    await until(() => expect(held.length).toBe(1));
    sim.injectRaw(corrupt(), ABI.cmdEntrySize);
    await until(() => expect(errors[0]).toBeInstanceOf(CorruptRingError));
    expect(() => ring.recover()).not.toThrow(); // a held command exposes no ring memory yet
    expect(held[0]!.signal.aborted).toBe(true);
    expect(held[0]!.signal.reason).toBeInstanceOf(RingResetError);
    sim.resetRing(1);
    expect(await first).toMatchObject({ status: 0x08 }); // BUSY: the initiator retries
    ring.complete(held[0]!, 0); // a late answer is ignored, never written to the reset ring
    const next = sim.submit({ cdb: read10(0, 1), dataInLength: 512 });
    await until(() => expect(held.length).toBe(2));
    ring.complete(held[1]!, 0, undefined, 512);
    expect(await next).toMatchObject({ status: 0 });
    expect(sim.broken).toBeUndefined();
  });

  it('is refused while a command may still use ring memory', async () => {
    const { sim, ring } = setup();
    ring.on('error', () => {});
    const held = hold(ring);
    void sim.submit({ cdb: read10(0, 1), dataInLength: 512 });
    await until(() => expect(held.length).toBe(1));
    void held[0]!.dataInBuffer; // hands the ring's Data-In memory out
    sim.injectRaw(corrupt(), ABI.cmdEntrySize);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(() => ring.recover()).toThrow(RingUsageError);
  });
});

describe('memory', () => {
  it('a closed ring, its engine and its simulator can be garbage-collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const rings: WeakRef<TcmuRing>[] = [];
    for (let i = 0; i < 5; i++) {
      const sim = new KernelSimulator();
      const ring = TcmuRing.open(sim.ringOptions());
      ring.on('command', (command) => ring.complete(command, 0));
      await sim.submit({ cdb: new Uint8Array(6) });
      await ring.close();
      await sim.close();
      rings.push(new WeakRef(ring));
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    gc();
    gc();
    expect(rings.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
  });
});

describe('close and reopen', () => {
  it('abandons commands still in flight after the drain timeout', async () => {
    const { sim, ring } = setup();
    const held = hold(ring);
    void sim.submit({ cdb: read10(0, 1), dataInLength: 512 }).catch(() => {});
    await until(() => expect(held.length).toBe(1));
    const command = held[0]!;
    const result = await ring.close({ drainTimeoutMs: 5 });
    expect(result).toEqual({ abandoned: [1], resumable: true });
    expect(command.signal.reason).toBeInstanceOf(RingClosedError);
    expect(() => command.dataOut).toThrow(RingClosedError);
    expect(ring.complete(command, 0)).toBe(false); // the answer is discarded
    expect(ring.closed).toBe(true);
  });

  it('keeps the map while an abandoned command still holds views of it, then unmaps', async () => {
    const { sim, ring } = setup();
    const held = hold(ring);
    void sim.submit({ cdb: read10(0, 1), dataInLength: 512 }).catch(() => {});
    void sim.submit({ cdb: read10(1, 1), dataInLength: 512 }).catch(() => {});
    await until(() => expect(held.length).toBe(2));
    const view = held[0]!.dataInBuffer as Uint8Array; // e.g. a backend reading into it
    await ring.close({ drainTimeoutMs: 5 });
    expect(view.length).toBe(512); // still mapped: a late backend write lands in memory we own
    view.fill(7);
    expect(ring.complete(held[1]!, 0)).toBe(false); // no view handed out: does not hold the map
    expect(view.length).toBe(512);
    expect(ring.complete(held[0]!, 0)).toBe(false);
    expect(view.length).toBe(0); // detached with the last holder, not a dangling pointer
  });

  it('drains: commands completed before the deadline are published', async () => {
    const { sim, ring } = setup();
    const held = hold(ring);
    const result = sim.submit({ cdb: new Uint8Array(6) });
    await until(() => expect(held.length).toBe(1));
    setTimeout(() => ring.complete(held[0]!, 0), 20);
    expect(await ring.close({ drainTimeoutMs: 5000 })).toEqual({ abandoned: [], resumable: true });
    expect((await result).status).toBe(0);
  });

  it('reopening resumes from cmd_tail and re-delivers unreaped commands', async () => {
    const sim = new KernelSimulator();
    cleanups.push(() => sim.close());
    const first = TcmuRing.open(sim.ringOptions({ maxInFlight: 2 }));
    const firstHeld = hold(first);
    const results = Array.from({ length: 5 }, (_, i) => sim.submit({ cdb: read10(i, 1), dataInLength: 512 }));
    await until(() => expect(firstHeld.length).toBe(2));
    firstHeld[0]!.writeDataIn(filled(512, 1));
    first.complete(firstHeld[0]!, 0);
    await results[0];
    await until(() => expect(firstHeld.length).toBe(3)); // the freed slot let command 3 in
    expect((await first.close()).abandoned).toEqual([2, 3]);

    const second = TcmuRing.open(sim.ringOptions());
    cleanups.push(() => second.close());
    second.on('command', (command) => {
      const lba = new DataView(command.cdb.buffer, command.cdb.byteOffset).getUint32(2);
      command.writeDataIn(filled(512, lba + 1));
      second.complete(command, 0);
    });
    const done = await Promise.all(results);
    done.forEach((result, i) => {
      expectBytes(result.dataIn, filled(512, i + 1));
    });
    expect(sim.broken).toBeUndefined();
  });

  it('reports a dead event channel as a NativeError', async () => {
    const { sim, ring } = setup();
    const errors: Error[] = [];
    ring.on('error', (error) => errors.push(error));
    hold(ring); // the ring polls once it has a consumer
    await new Promise((resolve) => setImmediate(resolve));
    sim.disconnect(); // the peer end goes away: the poll reports EOF
    await until(() => expect(errors.length).toBe(1));
    expect(errors[0]!.name).toBe('NativeError');
    expect((errors[0] as NativeError).code).toBe('EOF');
  });
});

describe('readUioMapSize', () => {
  it('parses maps/map0/size (hex) for /dev/uioN and rejects what it cannot use', () => {
    const root = mkdtempSync(join(tmpdir(), 'uio-sysfs-'));
    cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
    mkdirSync(join(root, 'uio3', 'maps', 'map0'), { recursive: true });
    writeFileSync(join(root, 'uio3', 'maps', 'map0', 'size'), '0x40800000\n');
    expect(readUioMapSize('/dev/uio3', root)).toBe(0x40800000);
    expect(() => readUioMapSize('/dev/sda', root)).toThrow(RingUsageError);
    expect(() => readUioMapSize('/dev/uio4', root)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    writeFileSync(join(root, 'uio3', 'maps', 'map0', 'size'), 'garbage');
    expect(() => readUioMapSize('/dev/uio3', root)).toThrow(MailboxError);
  });
});

describe('ring memory lent to a backend (abortNow)', () => {
  /** Holds every command; fails if anything else reached the handler. */
  function lending(flags: number) {
    const sim = new KernelSimulator({ flags, dataSize: 16 * 4096 });
    cleanups.push(() => sim.close());
    const ring = TcmuRing.open({ ...sim.ringOptions(), freeKeptBuffer: (id) => sim.freeKeptBuffer(id) });
    cleanups.push(() => ring.close());
    return { sim, ring, held: hold(ring) };
  }
  const write10 = (lba: number, blocks: number) => {
    const cdb = read10(lba, blocks);
    cdb[0] = 0x2a;
    return cdb;
  };

  it('answers a command without lent memory at once, TASK ABORTED, and drops its later answer', async () => {
    const { sim, ring, held } = lending(KERNEL_FLAGS.current);
    const result = sim.submit({ cdb: new Uint8Array(6) });
    await until(() => expect(held.length).toBe(1));
    expect(ring.abortNow(held[0]!, new Error('deadline'))).toBe(true);
    expect((await result).status).toBe(0x40);
    expect(held[0]!.aborted).toBe(true);
    expect(ring.complete(held[0]!, 0)).toBe(false);
    expect(sim.kept).toEqual([]);
  });

  it('with KEEP_BUF: answers a command whose Data-In a backend still fills; a late write never reaches a reused block', async () => {
    const { sim, ring, held } = lending(KERNEL_FLAGS.current);
    const slowRead = sim.submit({ cdb: read10(0, 8), dataInLength: 4096 });
    await until(() => expect(held.length).toBe(1));
    const reader = held[0]!;
    const lent = reader.dataInBuffer as Uint8Array; // a backend is reading into it
    expect(ring.abortNow(reader, new Error('deadline'))).toBe(true);
    expect((await slowRead).status).toBe(0x40);
    expect(sim.kept).toEqual([reader.id]);
    // Other commands come and take data blocks: none may be the kept ones.
    const payloads = Array.from({ length: 6 }, (_, i) => filled(4096, 0x10 + i));
    const writes = payloads.map((dataOut, i) => sim.submit({ cdb: write10(8 + i * 8, 8), dataOut }));
    await until(() => expect(held.length).toBe(7));
    lent.fill(0xee); // the backend's late write
    held.slice(1).forEach((writer, i) => {
      expectBytes(writer.dataOut, payloads[i]!);
      ring.complete(writer, 0);
    });
    for (const write of writes) expect((await write).status).toBe(0);
    expectBytes(sim.dataOf(reader.id), filled(4096, 0xee)); // it landed in its own, kept blocks
    expect(ring.complete(reader, 0)).toBe(false); // the backend is done: the buffer goes back
    expect(sim.kept).toEqual([]);
    expect(sim.broken).toBeUndefined();
  });

  it('without KEEP_BUF: leaves such a command unanswered until its backend is done', async () => {
    const { sim, ring, held } = lending(KERNEL_FLAGS.oooOnly);
    const slowRead = sim.submit({ cdb: read10(0, 8), dataInLength: 4096 });
    await until(() => expect(held.length).toBe(1));
    const reader = held[0]!;
    const lent = reader.dataInBuffer as Uint8Array;
    expect(ring.abortNow(reader, new Error('deadline'))).toBe(false);
    expect(reader.signal.aborted).toBe(true);
    lent.fill(0x33);
    reader.writeDataIn(lent);
    expect(ring.complete(reader, 0x40, undefined, 0)).toBe(true);
    expect((await slowRead).status).toBe(0x40);
  });

  it('a closed ring keeps the map and the fd while a kept buffer may still be written', async () => {
    const { sim, ring, held } = lending(KERNEL_FLAGS.current);
    void sim.submit({ cdb: read10(0, 1), dataInLength: 512 });
    await until(() => expect(held.length).toBe(1));
    const lent = held[0]!.dataInBuffer as Uint8Array;
    ring.abortNow(held[0]!, new Error('deadline'));
    await ring.close();
    expect(lent.length).toBe(512);
    lent.fill(1); // still our memory
    ring.complete(held[0]!, 0);
    expect(lent.length).toBe(0);
  });
});
