/**
 * LatencyHistogram against node:perf_hooks createHistogram() (HdrHistogram in C++), per
 * recorded sample and per summary, beside a baseline in the same run: the bare loop over the
 * same samples. The device records one latency per command (µs, a float from two clock reads),
 * so a RecordableHistogram must be fed whole nanoseconds >= 1: the "perf_hooks" row converts
 * as a replacement would, "perf_hooks, ns given" shows record() alone. CPU ns of this process
 * per sample (or per summary), median of BENCH_ROUNDS interleaved rounds (default 5).
 *
 *   pnpm --filter @tcmu/device bench        (after bench/run.ts)
 *   npx tsx --conditions=@tcmu/source packages/device/bench/histogram.ts
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { LatencyHistogram } from '../src/metrics.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SAMPLES = 1 << 16;
/** Passes over the samples per measurement: about 0.1-0.3 s each. */
const PASSES = 64;

// Latencies a device sees, deterministic: log-uniform from 1 µs to 10 ms, as fractional µs.
let seed = 0x2545f491;
const random = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x1_0000_0000;
};
const samplesUs = Float64Array.from({ length: SAMPLES }, () => 10 ** (random() * 4));
const samplesNs = samplesUs.map((us) => Math.max(1, Math.round(us * 1000)));

/** CPU ns of this process per call of `body` (which makes `calls` calls). */
function cpuNs(calls: number, body: () => void): number {
  const start = process.cpuUsage();
  body();
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / calls;
}

let sink = 0;
const recordRows = {
  'baseline (loop only)': () => {
    let sum = 0;
    for (let p = 0; p < PASSES; p++) for (let i = 0; i < SAMPLES; i++) sum += samplesUs[i]!;
    sink += sum;
  },
  LatencyHistogram: () => {
    const h = new LatencyHistogram();
    for (let p = 0; p < PASSES; p++) for (let i = 0; i < SAMPLES; i++) h.recordUs(samplesUs[i]!);
    sink += h.count;
  },
  perf_hooks: () => {
    const h = createHistogram();
    for (let p = 0; p < PASSES; p++) {
      for (let i = 0; i < SAMPLES; i++) {
        const ns = Math.round(samplesUs[i]! * 1000);
        h.record(ns > 0 ? ns : 1);
      }
    }
    sink += h.count;
  },
  'perf_hooks, ns given': () => {
    const h = createHistogram();
    for (let p = 0; p < PASSES; p++) for (let i = 0; i < SAMPLES; i++) h.record(samplesNs[i]!);
    sink += h.count;
  },
};

/** What DeviceStats.latency needs: count, min, max, mean and four percentiles. */
const QUERIES = 2000;
const filledOurs = new LatencyHistogram();
const filledHdr: RecordableHistogram = createHistogram();
for (let i = 0; i < SAMPLES; i++) {
  filledOurs.recordUs(samplesUs[i]!);
  filledHdr.record(samplesNs[i]!);
}
const summaryRows = {
  'LatencyHistogram.summary()': () => {
    for (let q = 0; q < QUERIES; q++) sink += filledOurs.summary().p99Ms;
  },
  'perf_hooks count/min/max/mean + 4 percentiles': () => {
    for (let q = 0; q < QUERIES; q++) {
      const h = filledHdr;
      sink += h.count + h.min + h.max + h.mean + h.percentile(50) + h.percentile(90) + h.percentile(99);
      sink += h.percentile(99.9);
    }
  },
};

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Median ns per call of each row over interleaved rounds (one warm-up round first). */
function run(rows: Record<string, () => void>, calls: number): Map<string, number> {
  const results = new Map<string, number[]>(Object.keys(rows).map((name) => [name, []]));
  for (let round = -1; round < ROUNDS; round++) {
    for (const [name, body] of Object.entries(rows)) {
      const ns = cpuNs(calls, body);
      if (round >= 0) results.get(name)!.push(ns);
    }
  }
  return new Map([...results].map(([name, values]) => [name, median(values)]));
}

const recorded = run(recordRows, PASSES * SAMPLES);
const queried = run(summaryRows, QUERIES);
const baseline = recorded.get('baseline (loop only)')!;
console.log(
  `latency histogram, CPU ns per call, median of ${ROUNDS} interleaved rounds of ${PASSES} x ${SAMPLES} samples (${new Date().toISOString().slice(0, 10)}, node ${process.version})`,
);
console.log('| operation | ns/call | minus baseline | vs LatencyHistogram |');
console.log('| --- | ---: | ---: | ---: |');
const ours = recorded.get('LatencyHistogram')! - baseline;
for (const [name, ns] of recorded) {
  const net = ns - baseline;
  const vs = name.startsWith('baseline') ? '' : `${(net / ours).toFixed(2)}x`;
  console.log(
    `| record: ${name} | ${ns.toFixed(1)} | ${name.startsWith('baseline') ? '' : net.toFixed(1)} | ${vs} |`,
  );
}
const oursSummary = queried.get('LatencyHistogram.summary()')!;
for (const [name, ns] of queried) {
  console.log(`| ${name} | ${ns.toFixed(0)} | | ${(ns / oursSummary).toFixed(2)}x |`);
}
if (Number.isNaN(sink)) console.log(sink); // keeps every loop's result alive
