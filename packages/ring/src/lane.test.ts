import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { RingCommand } from './command.js';
import type { LaneConfig } from './lane.js';
import { LANE_OPCODES, LANE_STATS } from './native.js';
import { TcmuRing } from './ring.js';
import { KERNEL_FLAGS, KernelSimulator, type SimulatorOptions } from './testing/index.js';

const BLOCK = 512;
const BLOCKS = 256;
const dir = mkdtempSync(join(tmpdir(), 'tcmu-lane-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A file of BLOCKS blocks, block b filled with (b + 1) & 0xff. */
function image(): { fd: number; path: string } {
  const path = join(dir, `image-${Math.random().toString(16).slice(2)}`);
  const fd = openSync(path, 'w+');
  const content = new Uint8Array(BLOCKS * BLOCK);
  for (let b = 0; b < BLOCKS; b++) content.fill((b + 1) & 0xff, b * BLOCK, (b + 1) * BLOCK);
  writeSync(fd, content, 0, content.length, 0);
  cleanups.push(() => closeSync(fd));
  return { fd, path };
}

function readImage(fd: number, lba: number, blocks: number): Uint8Array {
  const out = new Uint8Array(blocks * BLOCK);
  readSync(fd, out, 0, out.length, lba * BLOCK);
  return out;
}

/** Masks as @tcmu/scsi's plainIoProfile makes them for READ/WRITE 6/10/12/16. */
function masks(): Map<number, Uint8Array> {
  const map = new Map<number, Uint8Array>();
  for (const opcode of LANE_OPCODES) {
    const length = opcode < 0x20 ? 6 : opcode < 0x80 ? 10 : opcode < 0xa0 ? 16 : 12;
    const mask = new Uint8Array(length);
    if (length === 6) mask[1] = 0xe0;
    else mask[1] = 0x07 | 0xe8; // reserved bits + RDPROTECT/WRPROTECT + FUA
    mask[length - 1] = 0xff; // control byte: reserved, NACA
    map.set(opcode, mask);
  }
  return map;
}

function setup(options: { sim?: SimulatorOptions; lane?: Partial<LaneConfig> } = {}) {
  const sim = new KernelSimulator({ dataSize: 1 << 20, ...options.sim });
  cleanups.push(() => sim.close());
  const ring = TcmuRing.open(sim.ringOptions());
  cleanups.push(() => ring.close());
  const file = image();
  ring.lane.configure({
    fd: file.fd,
    blockSize: BLOCK,
    blockCount: BLOCKS,
    maxTransferBlocks: 64,
    opcodes: masks(),
    ...options.lane,
  });
  const toJs: RingCommand[] = [];
  ring.on('command', (command) => {
    toJs.push(command);
    ring.complete(command, 0x02, Uint8Array.of(0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0), 0);
  });
  return { sim, ring, file, toJs };
}

const read10 = (lba: number, blocks: number, byte1 = 0, control = 0) =>
  Uint8Array.of(
    0x28,
    byte1,
    lba >>> 24,
    (lba >>> 16) & 0xff,
    (lba >>> 8) & 0xff,
    lba & 0xff,
    0,
    blocks >>> 8,
    blocks & 0xff,
    control,
  );
const write10 = (lba: number, blocks: number) => {
  const cdb = read10(lba, blocks);
  cdb[0] = 0x2a;
  return cdb;
};

describe('native lane', () => {
  it('stays shut until the gate opens; then serves READ and WRITE without a JS call', async () => {
    const { sim, ring, file, toJs } = setup();
    expect((await sim.submit({ cdb: read10(3, 1), dataInLength: BLOCK })).status).toBe(0x02);
    expect(toJs).toHaveLength(1); // the gate starts closed
    ring.lane.setGate(true, true);
    const read = await sim.submit({ cdb: read10(3, 2), dataInLength: 2 * BLOCK });
    expect(read.status).toBe(0);
    expect(read.dataIn).toEqual(readImage(file.fd, 3, 2));
    const payload = new Uint8Array(4 * BLOCK).fill(0xab);
    expect((await sim.submit({ cdb: write10(10, 4), dataOut: payload })).status).toBe(0);
    expect(readImage(file.fd, 10, 4)).toEqual(payload);
    expect(toJs).toHaveLength(1);
    expect(ring.lane.counters()).toEqual({
      reads: 1,
      writes: 1,
      bytesRead: 2 * BLOCK,
      bytesWritten: 4 * BLOCK,
      scattered: 0,
    });
    expect(ring.lane.stats[LANE_STATS.latencyCount]).toBe(2);
  });

  it('leaves to JS what the emulation must answer: flagged CDBs, ranges, sizes, closed halves of the gate', async () => {
    const { sim, ring, toJs } = setup();
    ring.lane.setGate(true, false);
    const cases: Array<{ cdb: Uint8Array; dataInLength?: number; dataOut?: Uint8Array }> = [
      { cdb: read10(0, 1, 0x08), dataInLength: BLOCK }, // FUA
      { cdb: read10(0, 1, 0x20), dataInLength: BLOCK }, // RDPROTECT
      { cdb: read10(0, 1, 0x01), dataInLength: BLOCK }, // reserved bit
      { cdb: read10(0, 1, 0, 0x04), dataInLength: BLOCK }, // NACA
      { cdb: read10(BLOCKS - 1, 2), dataInLength: 2 * BLOCK }, // past the end
      { cdb: read10(0, 65), dataInLength: 65 * BLOCK }, // above maxTransferBlocks
      { cdb: read10(0, 0), dataInLength: 0 }, // transfer length 0
      { cdb: read10(0, 2), dataInLength: BLOCK }, // buffer not the transfer
      { cdb: write10(0, 1), dataOut: new Uint8Array(BLOCK) }, // writes are gated off
      { cdb: Uint8Array.of(0x12, 0, 0, 0, 36, 0), dataInLength: 36 }, // not a lane opcode
    ];
    for (const request of cases) expect((await sim.submit(request)).status).toBe(0x02);
    expect(toJs.length).toBe(cases.length);
    expect(ring.lane.counters().reads).toBe(0);
  });

  it('leaves an opcode without a mask to JS, and stops altogether when unconfigured', async () => {
    const opcodes = masks();
    opcodes.delete(0x28);
    const { sim, ring, toJs } = setup({ lane: { opcodes } });
    ring.lane.setGate(true, true);
    expect((await sim.submit({ cdb: read10(1, 1), dataInLength: BLOCK })).status).toBe(0x02);
    const read16 = Uint8Array.of(0x88, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0);
    expect((await sim.submit({ cdb: read16, dataInLength: BLOCK })).status).toBe(0);
    ring.lane.configure(undefined);
    expect((await sim.submit({ cdb: read16, dataInLength: BLOCK })).status).toBe(0x02);
    expect(toJs).toHaveLength(2);
  });

  it('retries nothing itself: a read past the end of a file that shrank goes to JS', async () => {
    const { sim, ring, toJs } = setup({ lane: { blockCount: BLOCKS * 2 } });
    ring.lane.setGate(true, true);
    expect((await sim.submit({ cdb: read10(BLOCKS + 1, 1), dataInLength: BLOCK })).status).toBe(0x02);
    expect(toJs).toHaveLength(1);
  });

  it('moves data across many iovecs both ways (fragmented data area)', async () => {
    const { sim, ring, file } = setup({ sim: { blockSize: 4096, dataSize: 64 * 4096 } });
    // Hold every other data block so the next command's blocks are not contiguous.
    const holders: RingCommand[] = [];
    ring.removeAllListeners('command');
    ring.on('command', (command) => {
      if (command.cdb[0] === 0x00) holders.push(command);
      else ring.complete(command, 0);
    });
    const held = Array.from({ length: 16 }, () => sim.submit({ cdb: new Uint8Array(6), dataInLength: 4096 }));
    await vi.waitFor(() => expect(holders).toHaveLength(16));
    for (let i = 0; i < 16; i += 2) ring.complete(holders[i]!, 0, undefined, 0);
    ring.lane.setGate(true, true);
    const payload = Uint8Array.from({ length: 32 * BLOCK }, (_, i) => (i * 7) & 0xff);
    expect((await sim.submit({ cdb: write10(64, 32), dataOut: payload })).status).toBe(0);
    expect(readImage(file.fd, 64, 32)).toEqual(payload);
    const back = await sim.submit({ cdb: read10(64, 32), dataInLength: payload.length });
    expect(back.dataIn).toEqual(payload);
    for (let i = 1; i < 16; i += 2) ring.complete(holders[i]!, 0, undefined, 0);
    await Promise.all(held);
    expect(ring.lane.counters()).toMatchObject({ reads: 1, writes: 1 });
    expect(ring.lane.counters().scattered).toBeGreaterThanOrEqual(1);
  });

  for (const [name, flags] of [
    ['OOOC', KERNEL_FLAGS.current],
    ['in-order', KERNEL_FLAGS.none],
  ] as const) {
    it(`${name}: lane answers and JS answers completing in any order keep every command's own data`, async () => {
      const sim = new KernelSimulator({ flags, dataSize: 1 << 20 });
      cleanups.push(() => sim.close());
      const ring = TcmuRing.open(sim.ringOptions());
      cleanups.push(() => ring.close());
      const file = image();
      ring.lane.setGate(true, true);
      // JS answers READ(16) (not in this lane's masks) from the image too, late and out of order.
      const late: RingCommand[] = [];
      ring.on('command', (command) => late.push(command));
      const opcodes = masks();
      opcodes.delete(0x88);
      ring.lane.configure({
        fd: file.fd,
        blockSize: BLOCK,
        blockCount: BLOCKS,
        maxTransferBlocks: 64,
        opcodes,
      });
      const results = Array.from({ length: 40 }, (_, i) => {
        const lba = (i * 5) % (BLOCKS - 2);
        const cdb =
          i % 3 === 0
            ? Uint8Array.of(0x88, 0, 0, 0, 0, 0, 0, 0, lba >>> 8, lba & 0xff, 0, 0, 0, 2, 0, 0)
            : read10(lba, 2);
        return sim.submit({ cdb, dataInLength: 2 * BLOCK }).then((result) => ({ lba, result }));
      });
      await vi.waitFor(() => expect(late.length).toBeGreaterThan(5));
      await new Promise((resolve) => setTimeout(resolve, 20));
      for (const command of late.reverse()) {
        const lba = new DataView(command.cdb.buffer, command.cdb.byteOffset).getUint32(6);
        command.writeDataIn(readImage(file.fd, lba, 2));
        ring.complete(command, 0);
      }
      for (const { lba, result } of await Promise.all(results)) {
        expect(result.status).toBe(0);
        expect(result.dataIn).toEqual(readImage(file.fd, lba, 2));
      }
      expect(ring.lane.counters().reads).toBeGreaterThan(20);
      expect(sim.broken).toBeUndefined();
    });
  }
});

describe('lane on the JS thread (io)', () => {
  /** A block I/O over memory: block b holds (b + 1) & 0xff; `mode` makes calls throw or wait. */
  function memoryIo() {
    const data = new Uint8Array(BLOCKS * BLOCK);
    for (let b = 0; b < BLOCKS; b++) data.fill((b + 1) & 0xff, b * BLOCK, (b + 1) * BLOCK);
    const state = { mode: 'sync' as 'sync' | 'throw' | 'wait', calls: 0 };
    const finish = (work: () => void): void | Promise<void> => {
      state.calls++;
      if (state.mode === 'throw') throw new Error('EIO');
      if (state.mode === 'wait') return new Promise<void>((resolve) => setTimeout(resolve, 200)).then(work);
      work();
    };
    const io = {
      read: (lba: number, into: Uint8Array) =>
        finish(() => into.set(data.subarray(lba * BLOCK, lba * BLOCK + into.length))),
      write: (lba: number, from: Uint8Array) => finish(() => data.set(from, lba * BLOCK)),
    };
    return { data, state, io };
  }

  function setupJs() {
    const memory = memoryIo();
    const { sim, ring, toJs } = setup({ lane: { fd: undefined, io: memory.io } });
    ring.lane.setGate(true, true);
    return { sim, ring, toJs, ...memory };
  }

  it('serves READ and WRITE through io without a command, and counts them', async () => {
    const { sim, ring, toJs, data } = setupJs();
    const read = await sim.submit({ cdb: read10(3, 2), dataInLength: 2 * BLOCK });
    expect(read.status).toBe(0);
    expect(read.dataIn).toEqual(data.subarray(3 * BLOCK, 5 * BLOCK));
    const payload = new Uint8Array(4 * BLOCK).fill(0xab);
    expect((await sim.submit({ cdb: write10(10, 4), dataOut: payload })).status).toBe(0);
    expect(data.subarray(10 * BLOCK, 14 * BLOCK)).toEqual(payload);
    expect(toJs).toHaveLength(0);
    expect(ring.lane.counters()).toMatchObject({
      reads: 1,
      writes: 1,
      bytesRead: 2 * BLOCK,
      bytesWritten: 4 * BLOCK,
    });
    expect(ring.lane.stats[LANE_STATS.latencyCount]).toBe(2);
    expect(ring.inFlight).toBe(0);
  });

  it('leaves to JS what the emulation must answer, and a transfer that throws', async () => {
    const { sim, ring, toJs, state } = setupJs();
    ring.lane.setGate(true, false);
    for (const request of [
      { cdb: read10(0, 1, 0x08), dataInLength: BLOCK }, // FUA
      { cdb: read10(BLOCKS - 1, 2), dataInLength: 2 * BLOCK }, // past the end
      { cdb: read10(0, 65), dataInLength: 65 * BLOCK }, // above maxTransferBlocks
      { cdb: read10(0, 2), dataInLength: BLOCK }, // buffer not the transfer
      { cdb: write10(0, 1), dataOut: new Uint8Array(BLOCK) }, // writes are gated off
    ]) {
      expect((await sim.submit(request)).status).toBe(0x02);
    }
    expect(state.calls).toBe(0);
    state.mode = 'throw';
    expect((await sim.submit({ cdb: read10(0, 1), dataInLength: BLOCK })).status).toBe(0x02);
    expect(state.calls).toBe(1);
    expect(toJs).toHaveLength(6);
    expect(ring.lane.counters().reads).toBe(0);
  });

  it('waits for a transfer that returns a promise, with the command tracked meanwhile', async () => {
    const { sim, ring, toJs, state, data } = setupJs();
    state.mode = 'wait';
    const pending = sim.submit({ cdb: read10(7, 1), dataInLength: BLOCK });
    await vi.waitFor(() => expect(ring.inFlight).toBe(1));
    expect(ring.commandsInFlight()[0]!.memoryExposed).toBe(true);
    expect(ring.lane.awaiting).toBe(1);
    const read = await pending;
    expect(read.status).toBe(0);
    expect(read.dataIn).toEqual(data.subarray(7 * BLOCK, 8 * BLOCK));
    expect(toJs).toHaveLength(0);
    expect(ring.inFlight).toBe(0);
    expect(ring.lane.awaiting).toBe(0);
    expect(ring.lane.counters().reads).toBe(1);
  });
});
