import { describe, expect, it } from 'vitest';
import { classifyCommand, LatencyHistogram, MetricsCollector } from './metrics.js';

describe('LatencyHistogram', () => {
  it('is empty at first', () => {
    const h = new LatencyHistogram();
    expect(h.summary()).toEqual({
      count: 0,
      minMs: 0,
      maxMs: 0,
      meanMs: 0,
      p50Ms: 0,
      p90Ms: 0,
      p99Ms: 0,
      p999Ms: 0,
    });
    expect(h.buckets()).toEqual([]);
  });

  it('keeps min, max and mean exact', () => {
    const h = new LatencyHistogram();
    for (const ms of [1, 2, 3, 10]) h.record(ms);
    const s = h.summary();
    expect(s.count).toBe(4);
    expect(s.minMs).toBeCloseTo(1, 9);
    expect(s.maxMs).toBeCloseTo(10, 9);
    expect(s.meanMs).toBeCloseTo(4, 9);
  });

  it('reports percentiles within one bucket (±19 %) of the true value', () => {
    const h = new LatencyHistogram();
    // 1..1000 ms uniformly: p50 ≈ 500, p90 ≈ 900, p99 ≈ 990.
    for (let i = 1; i <= 1000; i++) h.record(i);
    const s = h.summary();
    for (const [actual, expected] of [
      [s.p50Ms, 500],
      [s.p90Ms, 900],
      [s.p99Ms, 990],
    ] as const) {
      expect(actual).toBeGreaterThanOrEqual(expected);
      expect(actual).toBeLessThanOrEqual(expected * 1.19 + 1e-9);
    }
    expect(s.p999Ms).toBeLessThanOrEqual(1000);
  });

  it('never reports a percentile above the maximum', () => {
    const h = new LatencyHistogram();
    h.record(3);
    expect(h.percentile(100)).toBeCloseTo(3, 9);
    expect(h.percentile(0)).toBeCloseTo(3, 9);
  });

  it('puts each sample in a bucket whose bound exceeds it', () => {
    const h = new LatencyHistogram();
    const samples = [0, 0.0005, 0.001, 0.002, 0.75, 1, 1.5, 64, 1e7];
    for (const ms of samples) h.record(ms);
    const buckets = h.buckets();
    expect(buckets.reduce((n, b) => n + b.count, 0)).toBe(samples.length);
    // ascending bounds
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.leMs).toBeGreaterThan(buckets[i - 1]!.leMs);
    // exactly-on-boundary sample 1 ms = 1000 µs lands below a bound > 1 ms
    const one = new LatencyHistogram();
    one.record(1);
    expect(one.buckets()[0]!.leMs).toBeGreaterThan(1);
    expect(one.buckets()[0]!.leMs).toBeLessThanOrEqual(1.19);
  });

  it('puts each sample in exactly the bucket [previous bound, bound) that holds it', () => {
    // integers around every bound up to 2^33 µs, and fractions, against 2^(i/4) directly
    const samples: number[] = [1, 1.5, 2.999, 3, 1e9 + 0.5, 0x7fff_ffff, 0x8000_0000, 2 ** 33];
    for (let i = 1; i <= 33 * 4; i++) {
      const bound = 2 ** (i / 4);
      samples.push(Math.floor(bound) - 1, Math.floor(bound), Math.ceil(bound), Math.ceil(bound) + 1);
    }
    for (const us of samples.filter((s) => s >= 1)) {
      const h = new LatencyHistogram();
      h.recordUs(us);
      const [bucket] = h.buckets();
      const upper = bucket!.leMs * 1000;
      expect(upper, `sample ${us}`).toBeGreaterThan(us);
      expect(upper / 2 ** 0.25, `sample ${us}`).toBeLessThanOrEqual(us * (1 + 1e-12));
    }
  });

  it('treats negative and NaN samples as zero', () => {
    const h = new LatencyHistogram();
    h.record(-5);
    h.record(Number.NaN);
    expect(h.summary()).toMatchObject({ count: 2, minMs: 0, maxMs: 0 });
  });

  it('resets', () => {
    const h = new LatencyHistogram();
    h.record(5);
    h.reset();
    expect(h.count).toBe(0);
    expect(h.summary().maxMs).toBe(0);
  });
});

describe('classifyCommand', () => {
  it.each([
    [0x08, undefined, 'read'],
    [0x28, undefined, 'read'],
    [0xa8, undefined, 'read'],
    [0x88, undefined, 'read'],
    [0x0a, undefined, 'write'],
    [0x2a, undefined, 'write'],
    [0x8a, undefined, 'write'],
    [0x89, undefined, 'write'], // COMPARE AND WRITE
    [0x93, undefined, 'write'], // WRITE SAME(16)
    [0x7f, 0x0009, 'read'], // READ(32)
    [0x7f, 0x000b, 'write'], // WRITE(32)
    [0x7f, 0x0001, 'other'],
    [0x12, undefined, 'other'], // INQUIRY
    [0x35, undefined, 'other'], // SYNCHRONIZE CACHE
  ] as const)('opcode 0x%s (sa %s) is %s', (opcode, sa, kind) => {
    expect(classifyCommand(opcode, sa)).toBe(kind);
  });
});

describe('MetricsCollector', () => {
  const clock = () => {
    let t = 1000;
    return {
      now: () => t,
      advance: (ms: number) => {
        t += ms;
      },
    };
  };

  it('counts commands, reads, writes, errors, aborted and bytes', () => {
    const c = clock();
    const m = new MetricsCollector({ now: c.now });
    for (let i = 0; i < 3; i++) m.started();
    expect(m.snapshot()).toMatchObject({ inFlight: 3, maxInFlight: 3 });
    m.finished({ opcode: 0x28, status: 0, dataInBytes: 4096, dataOutBytes: 0, latencyMs: 1 });
    m.finished({ opcode: 0x2a, status: 0, dataInBytes: 0, dataOutBytes: 8192, latencyMs: 2 });
    m.finished({ opcode: 0x2a, status: 0x02, dataInBytes: 0, dataOutBytes: 512, latencyMs: 3 });
    m.started();
    m.finished({ opcode: 0x28, status: 0x40, dataInBytes: 0, dataOutBytes: 0, latencyMs: 4 });
    const s = m.snapshot();
    expect(s).toMatchObject({
      commands: 4,
      reads: 2,
      writes: 2,
      errors: 2,
      aborted: 1,
      bytesRead: 4096,
      bytesWritten: 8192, // the failed write's Data-Out is not counted
      inFlight: 0,
      maxInFlight: 3,
    });
    expect(s.latency.count).toBe(4);
    expect(s.latency.maxMs).toBeCloseTo(4, 9);
  });

  it('a sample carrying endedAt costs no clock read and lands in the bucket of that time', () => {
    const c = clock();
    let reads = 0;
    const m = new MetricsCollector({
      now: () => {
        reads++;
        return c.now();
      },
    });
    reads = 0;
    // Four complete 250 ms buckets of 25 commands, stamped by the caller.
    for (let b = 0; b < 4; b++) {
      for (let i = 0; i < 25; i++) {
        m.record({
          opcode: 0x28,
          status: 0,
          dataInBytes: 1000,
          dataOutBytes: 0,
          latencyMs: 1,
          endedAt: 3000 + b * 250,
        });
      }
    }
    expect(reads).toBe(0);
    c.advance(3000); // now 4000: the four buckets 3000..3999 are complete
    const s = m.snapshot();
    expect(s.iops).toBeCloseTo(100, 6);
    expect(s.readBytesPerSec).toBeCloseTo(100_000, 6);
  });

  it('computes rates over the last second of complete buckets', () => {
    const c = clock();
    const m = new MetricsCollector({ now: c.now });
    c.advance(2000);
    // 100 commands spread over one second (four 250 ms buckets)
    for (let b = 0; b < 4; b++) {
      for (let i = 0; i < 25; i++)
        m.record({ opcode: 0x28, status: 0, dataInBytes: 1000, dataOutBytes: 0, latencyMs: 1 });
      c.advance(250);
    }
    const s = m.snapshot();
    expect(s.iops).toBeCloseTo(100, 6);
    expect(s.readBytesPerSec).toBeCloseTo(100_000, 6);
    expect(s.writeBytesPerSec).toBe(0);
    // after two idle seconds the rate falls to zero
    c.advance(2000);
    expect(m.snapshot().iops).toBe(0);
  });

  it('averages over its lifetime while younger than the window', () => {
    const c = clock();
    const m = new MetricsCollector({ now: c.now });
    for (let i = 0; i < 10; i++)
      m.record({ opcode: 0x2a, status: 0, dataInBytes: 0, dataOutBytes: 10, latencyMs: 1 });
    c.advance(250);
    const s = m.snapshot();
    expect(s.iops).toBeCloseTo(40, 6); // 10 commands in one 250 ms bucket
    expect(s.writeBytesPerSec).toBeCloseTo(400, 6);
    expect(s.uptimeMs).toBe(250);
  });

  it('never lets inFlight go negative', () => {
    const m = new MetricsCollector();
    m.finished({ opcode: 0, status: 0, dataInBytes: 0, dataOutBytes: 0, latencyMs: 0 });
    expect(m.inFlight).toBe(0);
  });
});
