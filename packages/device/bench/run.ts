/**
 * What @tcmu/device costs per command, next to C consumers of the same ring in the same run.
 * The simulated kernel runs in a worker thread and keeps DEPTH READ(10)s or WRITE(10)s
 * queued; each consumer serves them:
 *
 *   C memory         packages/ring/bench/c-consumer.c: copies Data-In from a static 1 MiB
 *                    buffer and Data-Out into one (the ring bench's consumer: no disk behind it)
 *   C memory image   the same serving a 64 MiB image in memory at LBA * 512 (what a
 *                    MemoryBackend does: the same data, the same cache misses)
 *   C file           the same, serving an image with preadv/pwritev straight on the iovecs
 *   device, memory   openDevice over a MemoryBackend, the defaults: READ/WRITE served by
 *                    the ring's lane on the JS thread (jsLane), the rest by the TypeScript path
 *   device, memory TS  the same with jsLane: false: every command through the TypeScript path
 *   device, file TS  openDevice over FileBackend (io 'sync') on the image, jsLane: false
 *   device, lane     the same with nativeLane: READ/WRITE served in the ring addon
 *
 * Reported per row: commands/s, the consumer's CPU time per command (its thread's
 * utime+stime from /proc: what it would cost against an infinitely fast kernel), the
 * ratios to the C consumers, and for the device rows the JS heap bytes and objects
 * allocated per command (V8's sampling heap profiler at an interval of 1 byte, garbage
 * included). Median of BENCH_ROUNDS interleaved rounds (default 3), BENCH_SECONDS each.
 *
 *   pnpm --filter @tcmu/device bench
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { TcmuRing } from '@tcmu/ring';
import { MemoryBackend } from '@tcmu/scsi';
import { openFileBackend } from '../src/backends.js';
import type { Device } from '../src/device.js';
import { openDevice } from '../src/open.js';
import type { DevicePlatform } from '../src/platform.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DEPTH = 32;
const IMAGE_BYTES = 64 << 20;
const BLOCKS = IMAGE_BYTES / 512;
const CLOCK_TICKS = 100; // USER_HZ

const here = fileURLToPath(new URL('.', import.meta.url));
const scratch = mkdtempSync(join(process.platform === 'linux' ? '/dev/shm' : tmpdir(), 'device-bench-'));
const image = join(scratch, 'image');
writeFileSync(image, new Uint8Array(IMAGE_BYTES).fill(0x2d));
const consumerBinary = join(scratch, 'c-consumer');
execFileSync('cc', ['-O2', '-o', consumerBinary, join(here, '../../ring/bench/c-consumer.c')]);

// The ring benchmark's simulated kernel, on @tcmu/ring's build (the worker has no TypeScript loader).
const worker = new Worker(new URL('../../ring/bench/producer.mjs', import.meta.url), { execArgv: [] });
async function next(type: string): Promise<Record<string, number>> {
  for (;;) {
    const [message] = await once(worker, 'message');
    if (message.type === type) return message;
  }
}

function cpuSeconds(statPath: string): number {
  // fields 14 and 15 (utime, stime), counted after the ") " that ends the comm field
  const fields = readFileSync(statPath, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
const mainThreadStat = `/proc/self/task/${process.pid}/stat`;

/** Only the ring: no configfs, no target (fabric 'none'). */
function ringOnlyPlatform(ring: { memoryFd: number; eventFd: number; mapSize: number }): DevicePlatform {
  const fail = () => Promise.reject(new Error('not used by the bench'));
  return {
    createBackstore: async (spec) => ({ name: spec.name, hba: 0, path: '/bench', handle: undefined }),
    findUio: async () => ({ path: '/dev/uio-bench', mapSize: ring.mapSize }),
    openRing: (_uio, options) => TcmuRing.open({ ...ring, ...options }),
    freeKeptBuffer: async () => {},
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

const consumers = [
  'C memory',
  'C memory image',
  'C file',
  'device, memory',
  'device, memory TS',
  'device, file TS',
  'device, lane',
] as const;
type Consumer = (typeof consumers)[number];

interface Sample {
  perSecond: number;
  cpuUsPerCommand: number;
  /** kicks (cmd_tail publications) and wakeups (kernel notifications) per command */
  kicksPerCommand: number;
  wakeupsPerCommand: number;
  heapBytesPerCommand?: number;
  objectsPerCommand?: number;
}

async function openBenchDevice(consumer: Consumer, ring: Record<string, number>) {
  const platform = ringOnlyPlatform(ring as { memoryFd: number; eventFd: number; mapSize: number });
  if (consumer.startsWith('device, memory')) {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: BLOCKS });
    const jsLane = consumer === 'device, memory TS' ? false : undefined;
    return {
      device: await openDevice({ name: 'bench', backend, fabric: { type: 'none' }, platform, jsLane }),
    };
  }
  const file = await openFileBackend(image, { blockSize: 512, io: 'sync' });
  const device = await openDevice({
    name: 'bench',
    backend: file,
    fabric: { type: 'none' },
    platform,
    nativeLane: consumer === 'device, lane',
    jsLane: false,
  });
  return { device, file };
}

/** JS heap bytes and objects allocated per command while `device` serves for `ms`. */
async function allocations(
  device: Device,
  run: () => Promise<unknown>,
): Promise<{ bytes: number; objects: number }> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  const before = device.stats().commands;
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 1,
    includeObjectsCollectedByMinorGC: true,
    includeObjectsCollectedByMajorGC: true,
  } as never);
  await run();
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as {
    profile: { samples: { size: number }[] };
  };
  const commands = device.stats().commands - before;
  session.disconnect();
  let bytes = 0;
  for (const sample of profile.samples) bytes += sample.size;
  return { bytes: bytes / commands, objects: profile.samples.length / commands };
}

async function measure(consumer: Consumer, size: number, write: boolean, withHeap: boolean): Promise<Sample> {
  worker.postMessage({ type: 'setup' });
  const ring = await next('ready');
  const work = { size, write, depth: DEPTH, blocks: BLOCKS };
  let busySeconds = 0;
  let result: Record<string, number>;
  let heap: { bytes: number; objects: number } | undefined;
  if (consumer.startsWith('C')) {
    const store = { 'C memory': [], 'C memory image': [`memory:${IMAGE_BYTES}`], 'C file': [image] };
    const args = [String(ring.mapSize), ...store[consumer as keyof typeof store]];
    const child = spawn(consumerBinary, args, {
      stdio: ['ignore', 'inherit', 'inherit', ring.memoryFd!, ring.eventFd!],
    });
    worker.postMessage({ type: 'run', ...work, durationMs: SECONDS * 1000 });
    result = await next('result');
    busySeconds = cpuSeconds(`/proc/${child.pid}/stat`);
    child.kill();
    await once(child, 'exit');
  } else {
    const { device, file } = await openBenchDevice(consumer, ring);
    const startedCpu = cpuSeconds(mainThreadStat);
    worker.postMessage({ type: 'run', ...work, durationMs: SECONDS * 1000 });
    result = await next('result');
    busySeconds = cpuSeconds(mainThreadStat) - startedCpu;
    const lane = device.jsLane;
    if ((consumer === 'device, memory') !== (lane !== undefined && lane.reads + lane.writes > 0)) {
      throw new Error(`${consumer}: the JS lane served ${lane ? lane.reads + lane.writes : 'no'} commands`);
    }
    if (withHeap) {
      heap = await allocations(device, async () => {
        worker.postMessage({ type: 'run', ...work, durationMs: 500 });
        await next('result');
      });
    }
    await device.close({ drainTimeoutMs: 1000 });
    await file?.close();
  }
  worker.postMessage({ type: 'teardown' });
  await next('closed');
  if (result.failed) throw new Error(`${result.failed} commands failed (${consumer})`);
  return {
    perSecond: result.completed! / result.seconds!,
    cpuUsPerCommand: (busySeconds / result.completed!) * 1e6,
    kicksPerCommand: result.kicks! / result.completed!,
    wakeupsPerCommand: result.notifications! / result.completed!,
    ...(heap ? { heapBytesPerCommand: heap.bytes, objectsPerCommand: heap.objects } : {}),
  };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const rows: string[] = [];
try {
  for (const size of [4096, 131072]) {
    for (const write of [false, true]) {
      const samples = new Map<Consumer, Sample[]>(consumers.map((c) => [c, []]));
      for (let round = 0; round < ROUNDS; round++) {
        for (const consumer of consumers) {
          samples.get(consumer)!.push(await measure(consumer, size, write, round === 0));
        }
      }
      const med = (consumer: Consumer, key: 'perSecond' | 'cpuUsPerCommand' | 'kicksPerCommand') =>
        median(samples.get(consumer)!.map((s) => s[key]));
      const cFile = med('C file', 'cpuUsPerCommand');
      const cMemory = med('C memory', 'cpuUsPerCommand');
      const cImage = med('C memory image', 'cpuUsPerCommand');
      for (const consumer of consumers) {
        const cpu = med(consumer, 'cpuUsPerCommand');
        const first = (samples.get(consumer) as Sample[])[0] as Sample;
        rows.push(
          [
            `${size / 1024} KiB ${write ? 'WRITE' : 'READ'}(10)`,
            consumer,
            Math.round(med(consumer, 'perSecond')).toLocaleString('en-US'),
            cpu.toFixed(2),
            `${(cpu / cFile).toFixed(2)}x`,
            `${(cpu / cMemory).toFixed(2)}x`,
            `${(cpu / cImage).toFixed(2)}x`,
            med(consumer, 'kicksPerCommand').toFixed(2),
            first.heapBytesPerCommand === undefined ? '' : Math.round(first.heapBytesPerCommand).toString(),
            first.objectsPerCommand === undefined ? '' : first.objectsPerCommand.toFixed(1),
          ].join(' | '),
        );
      }
    }
  }
} finally {
  await worker.terminate();
  rmSync(scratch, { recursive: true, force: true });
}
console.log(
  `@tcmu/device per command, queue depth ${DEPTH}, simulated kernel in a worker thread, median of ${ROUNDS} rounds of ${SECONDS} s (${new Date().toISOString().slice(0, 10)}, node ${process.version})`,
);
console.log(
  '| command | consumer | cmd/s | CPU µs/cmd | vs C file | vs C memory | vs C memory image | kicks/cmd | heap B/cmd | objects/cmd |',
);
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const row of rows) console.log(`| ${row} |`);
