/**
 * What the device layer costs per command: 4 KiB READ(10) and WRITE(10)
 * through the ring simulator, served (a) by a bare TcmuRing + LogicalUnit
 * loop (baseline) and (b) by a Device (handler chain, metrics, lifecycle).
 * Both run in this one thread with the simulator, so absolute numbers are
 * low; the ratio is the point. Bounded: about 2 s per row.
 *
 *   pnpm --filter @tcmu/device bench
 */
import { TcmuRing } from '@tcmu/ring';
import { KernelSimulator } from '@tcmu/ring/testing';
import { LogicalUnit, MemoryBackend } from '@tcmu/scsi';
import { openDevice } from '../src/open.js';
import type { DevicePlatform } from '../src/platform.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const DEPTH = 32;
const BLOCK = 4096;
const BLOCKS = 4096;

const rw10 = (opcode: number, lba: number) =>
  Uint8Array.of(opcode, 0, lba >>> 24, (lba >>> 16) & 0xff, (lba >>> 8) & 0xff, lba & 0xff, 0, 0, 1, 0);

async function drive(sim: KernelSimulator, write: boolean): Promise<number> {
  const payload = new Uint8Array(BLOCK).fill(7);
  let done = 0;
  let lba = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      lba = (lba + 1) % BLOCKS;
      const result = write
        ? await sim.submit({ cdb: rw10(0x2a, lba), dataOut: payload })
        : await sim.submit({ cdb: rw10(0x28, lba), dataInLength: BLOCK });
      if (result.status !== 0) throw new Error(`status ${result.status}`);
      done++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: DEPTH }, worker));
  return done / ((performance.now() - started) / 1000);
}

async function baseline(write: boolean): Promise<number> {
  const sim = new KernelSimulator({ dataSize: 16 << 20 });
  const ring = TcmuRing.open(sim.ringOptions({ maxInFlight: 128 }));
  const unit = new LogicalUnit({
    backend: new MemoryBackend({ blockSize: BLOCK, blockCount: BLOCKS }),
    powerOnUnitAttention: false,
  });
  ring.on('command', (command) => {
    const isWrite = command.cdb[0] === 0x2a;
    void unit
      .execute({
        cdb: command.cdb,
        dataOut: isWrite ? command.dataOut() : new Uint8Array(0),
        dataInLength: isWrite ? 0 : command.dataInLength,
        signal: command.signal,
      })
      .then((result) => {
        ring.complete(command, {
          status: result.status,
          ...(result.sense ? { sense: result.sense } : {}),
          ...(result.dataIn ? { dataIn: result.dataIn } : {}),
          ...(isWrite ? {} : { readLen: result.dataIn?.length ?? 0 }),
        });
      });
  });
  try {
    return await drive(sim, write);
  } finally {
    await ring.close();
    await sim.close();
  }
}

/** Only the ring: no configfs, no target (fabric 'none'). */
function ringOnlyPlatform(sim: KernelSimulator): DevicePlatform {
  const fail = () => Promise.reject(new Error('not used by the bench'));
  return {
    createBackstore: async (spec) => ({ name: spec.name, hba: 0, path: '/bench', handle: undefined }),
    findUio: async () => ({ path: '/dev/uio-bench', mapSize: sim.mapSize }),
    openRing: (_uio, options) => TcmuRing.open(sim.ringOptions(options)),
    setQueueDepth: async () => undefined,
    createTarget: fail,
    usedLuns: async () => [],
    createLun: fail,
    waitForDisk: fail,
    makeNode: fail,
    removeNode: async () => {},
    removeLun: async () => {},
    removeTarget: async () => {},
    removeBackstore: async () => {},
  };
}

async function device(write: boolean): Promise<number> {
  const sim = new KernelSimulator({ dataSize: 16 << 20 });
  const dev = await openDevice({
    name: 'bench',
    backend: new MemoryBackend({ blockSize: BLOCK, blockCount: BLOCKS }),
    fabric: { type: 'none' },
    platform: ringOnlyPlatform(sim),
  });
  try {
    return await drive(sim, write);
  } finally {
    await dev.close();
    await sim.close();
  }
}

const rows: string[] = [];
for (const write of [false, true]) {
  const base = await baseline(write);
  const dev = await device(write);
  rows.push(
    `| 4 KiB ${write ? 'WRITE(10)' : 'READ(10)'} | ${Math.round(base)} | ${Math.round(dev)} | ${(dev / base).toFixed(2)}x |`,
  );
}
console.log(
  `@tcmu/device overhead, queue depth ${DEPTH}, simulator in the same thread (${new Date().toISOString().slice(0, 10)})`,
);
console.log('| command | bare ring + unit (cmd/s) | Device (cmd/s) | ratio |');
console.log('| --- | ---: | ---: | ---: |');
for (const row of rows) console.log(row);
