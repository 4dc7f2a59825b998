// Ring throughput: the simulated kernel (worker thread) drives READs through
// the ring to a trivial handler, served either by @tcmu/ring (this thread) or
// by a C reference consumer of the same protocol (a child process compiled
// here with cc). Prints, per transfer size:
//  * throughput (commands/s, GB/s) with the simulated kernel in the loop: the
//    JS simulator is usually the bottleneck, so this ratio is close to 1;
//  * consumer capacity = commands per second of consumer CPU time (utime+stime
//    of the main thread for @tcmu/ring, of the child for C, from /proc):
//    what each consumer would sustain against an infinitely fast producer.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { TcmuRing } from '../dist/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const DURATION_MS = Number(process.env.RING_BENCH_MS ?? 1500);
const DEPTH = 64;
const SIZES = [0, 4096, 131072];

const dir = mkdtempSync(join(tmpdir(), 'ring-bench-'));
const consumerBinary = join(dir, 'c-consumer');
execFileSync('cc', ['-O2', '-o', consumerBinary, join(here, 'c-consumer.c')]);

const worker = new Worker(new URL('./producer.mjs', import.meta.url));
const next = async (type) => {
  for (;;) {
    const [message] = await once(worker, 'message');
    if (message.type === type) return message;
  }
};

const CLOCK_TICKS = 100; // USER_HZ on Linux

function cpuSecondsOf(statPath) {
  // fields 14 and 15 (utime, stime), counted after the ") " that ends the comm field
  const fields = readFileSync(statPath, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function measure(size, consumer) {
  worker.postMessage({ type: 'setup' });
  const options = await next('ready');
  let stop;
  let busySeconds;
  if (consumer === 'ts') {
    const ring = TcmuRing.open({ ...options, maxInFlight: 256 });
    const source = new Uint8Array(131072).fill(0x5a);
    ring.on('command', (command) => {
      const produced = command.writeDataIn(source.subarray(0, command.dataInLength));
      ring.complete(command, 0, undefined, produced);
    });
    const mainThreadStat = `/proc/self/task/${process.pid}/stat`;
    const before = cpuSecondsOf(mainThreadStat);
    stop = () => {
      busySeconds = cpuSecondsOf(mainThreadStat) - before;
      return ring.close();
    };
  } else {
    const child = spawn(consumerBinary, [String(options.mapSize)], {
      stdio: ['ignore', 'inherit', 'inherit', options.memoryFd, options.eventFd],
    });
    stop = async () => {
      busySeconds = cpuSecondsOf(`/proc/${child.pid}/stat`);
      child.kill();
      await once(child, 'exit');
    };
  }
  worker.postMessage({ type: 'run', size, depth: DEPTH, durationMs: DURATION_MS });
  const result = await next('result');
  await stop();
  worker.postMessage({ type: 'teardown' });
  await next('closed');
  if (result.failed) throw new Error(`${result.failed} commands failed`);
  const perSecond = result.completed / result.seconds;
  return { perSecond, gbPerSecond: (perSecond * size) / 1e9, capacity: result.completed / busySeconds };
}

const rows = [];
try {
  for (const size of SIZES) {
    const ts = await measure(size, 'ts');
    const c = await measure(size, 'c');
    rows.push({
      size: size === 0 ? '0 B' : `${size / 1024} KiB`,
      'ts cmd/s': Math.round(ts.perSecond),
      'ts GB/s': ts.gbPerSecond.toFixed(3),
      'C cmd/s': Math.round(c.perSecond),
      'C GB/s': c.gbPerSecond.toFixed(3),
      'ts/C': (ts.perSecond / c.perSecond).toFixed(2),
      'ts cmd/CPU-s': Math.round(ts.capacity),
      'C cmd/CPU-s': Math.round(c.capacity),
      'capacity ts/C': (ts.capacity / c.capacity).toFixed(2),
    });
  }
  console.table(rows);
} finally {
  await worker.terminate();
  rmSync(dir, { recursive: true, force: true });
}
