/**
 * Counters and a latency histogram for a device. Recording is a few integer
 * additions per command (no allocation), so it is always on.
 */

/** Sub-buckets per power of two: bucket bounds grow by 2^(1/4) ≈ 19 %. */
const SUB_BUCKETS = 4;
/** Octaves above 1 µs: 2^36 µs ≈ 19 hours, far beyond any command timeout. */
const OCTAVES = 36;
const BUCKET_COUNT = OCTAVES * SUB_BUCKETS + 1;

/** Upper bound (µs, exclusive) of bucket `index`; bucket 0 holds everything below 1 µs. */
const upperBoundUs = (index: number): number => 2 ** (index / SUB_BUCKETS);
const UPPER_BOUNDS_US = Float64Array.from({ length: BUCKET_COUNT }, (_, i) => upperBoundUs(i));

/**
 * The bucket of a sample: its octave from the leading zeros of its integer
 * part, then at most SUB_BUCKETS comparisons (no log or pow per command).
 */
function bucketOf(us: number): number {
  if (us < 1) return 0;
  if (us >= 0x8000_0000) {
    let index = Math.ceil(Math.log2(us) * SUB_BUCKETS - 1e-9);
    if (index < BUCKET_COUNT - 1 && UPPER_BOUNDS_US[index]! <= us) index++; // log2 rounding
    return index < BUCKET_COUNT ? index : BUCKET_COUNT - 1;
  }
  let index = (31 - Math.clz32(us)) * SUB_BUCKETS + 1;
  while (UPPER_BOUNDS_US[index]! <= us) index++;
  return index;
}

export interface HistogramBucket {
  /** Exclusive upper bound of the bucket, in milliseconds. */
  readonly leMs: number;
  readonly count: number;
}

export interface LatencySummary {
  readonly count: number;
  readonly minMs: number;
  readonly maxMs: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
}

/**
 * Log-scale latency histogram (4 buckets per octave from 1 µs): percentiles
 * are accurate to about ±10 %, min, max and mean are exact.
 *
 * Kept rather than perf_hooks.createHistogram() (issue 10; bench/histogram.ts, Node 20.20.2,
 * 2026-12-02, medians of 5-7 interleaved rounds, four runs): recordUs() costs 18-20 ns per
 * sample, RecordableHistogram.record() 46-60 ns with the conversion to whole ns it needs
 * (48-50 ns without), on a path of about 1 µs per command; summary() 0.8-1.2 µs against
 * 147-185 µs for its count, min, max, mean and four percentiles. And the ring's native lane records into
 * this bucket layout (include()), which a RecordableHistogram cannot take.
 */
export class LatencyHistogram {
  readonly #counts = new Float64Array(BUCKET_COUNT);
  #count = 0;
  #sumUs = 0;
  #minUs = Number.POSITIVE_INFINITY;
  #maxUs = 0;
  /** Samples recorded elsewhere (the ring's native lane), same layout: count, sum, min, max, buckets. */
  #extra: Float64Array | undefined;

  /**
   * Adds a histogram kept outside JS to every summary: `source` holds count,
   * sum (us), min (us), max (us), then BUCKET_COUNT bucket counts (LANE_STATS
   * of @tcmu/ring from `latencyCount` on).
   */
  include(source: Float64Array): void {
    if (source.length < 4 + BUCKET_COUNT) throw new RangeError('latency source is too short');
    this.#extra = source;
  }

  /** Record one sample in milliseconds (negative or NaN samples count as 0). */
  record(ms: number): void {
    this.recordUs(ms > 0 ? ms * 1000 : 0);
  }

  /** Record one sample in microseconds (negative or NaN samples count as 0). */
  recordUs(sample: number): void {
    const us = sample > 0 ? sample : 0;
    this.#counts[bucketOf(us)]!++;
    this.#count++;
    this.#sumUs += us;
    if (us < this.#minUs) this.#minUs = us;
    if (us > this.#maxUs) this.#maxUs = us;
  }

  get count(): number {
    return this.#count + (this.#extra?.[0] ?? 0);
  }

  #bucket(i: number): number {
    return this.#counts[i]! + (this.#extra?.[4 + i] ?? 0);
  }

  get #max(): number {
    return Math.max(this.#maxUs, this.#extra?.[3] ?? 0);
  }

  /**
   * The latency (ms) below which `p` percent of the samples fall: the upper
   * bound of the bucket holding that rank, capped by the exact maximum.
   */
  percentile(p: number): number {
    const count = this.count;
    if (count === 0) return 0;
    const clamped = Math.min(Math.max(p, 0), 100);
    const rank = Math.max(1, Math.ceil((clamped / 100) * count));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.#bucket(i);
      if (seen >= rank) return Math.min(upperBoundUs(i), this.#max) / 1000;
    }
    return this.#max / 1000;
  }

  summary(): LatencySummary {
    const count = this.count;
    const extra = this.#extra;
    const sumUs = this.#sumUs + (extra?.[1] ?? 0);
    const minUs = Math.min(
      this.#minUs,
      extra !== undefined && extra[0]! > 0 ? extra[2]! : Number.POSITIVE_INFINITY,
    );
    return {
      count,
      minMs: count === 0 ? 0 : minUs / 1000,
      maxMs: this.#max / 1000,
      meanMs: count === 0 ? 0 : sumUs / count / 1000,
      p50Ms: this.percentile(50),
      p90Ms: this.percentile(90),
      p99Ms: this.percentile(99),
      p999Ms: this.percentile(99.9),
    };
  }

  /** Non-empty buckets, ascending (for exporting to Prometheus-style histograms). */
  buckets(): HistogramBucket[] {
    const out: HistogramBucket[] = [];
    for (let i = 0; i < BUCKET_COUNT; i++) {
      const count = this.#bucket(i);
      if (count > 0) out.push({ leMs: upperBoundUs(i) / 1000, count });
    }
    return out;
  }

  reset(): void {
    this.#counts.fill(0);
    this.#count = 0;
    this.#sumUs = 0;
    this.#minUs = Number.POSITIVE_INFINITY;
    this.#maxUs = 0;
  }
}

/** A snapshot of a device's counters (cumulative since open unless noted). */
export interface DeviceStats {
  /** Commands completed (any status). */
  readonly commands: number;
  /** READ(6/10/12/16/32) commands completed. */
  readonly reads: number;
  /** WRITE(6/10/12/16/32), WRITE AND VERIFY, WRITE SAME, COMPARE AND WRITE completed. */
  readonly writes: number;
  /** Completed with a status other than GOOD / CONDITION MET. */
  readonly errors: number;
  /** Completed with TASK ABORTED (TMR abort, or close() after the drain timeout). */
  readonly aborted: number;
  /** Data-In bytes returned to the initiator. */
  readonly bytesRead: number;
  /** Data-Out bytes received by commands that completed GOOD. */
  readonly bytesWritten: number;
  /** Commands received and not yet completed. */
  readonly inFlight: number;
  /** The highest `inFlight` seen. */
  readonly maxInFlight: number;
  /** Commands per second over the last completed second(s) of the rate window. */
  readonly iops: number;
  /** Data-In bytes per second over the rate window. */
  readonly readBytesPerSec: number;
  /** Data-Out bytes per second over the rate window. */
  readonly writeBytesPerSec: number;
  readonly latency: LatencySummary;
  /** Milliseconds since the collector started. */
  readonly uptimeMs: number;
}

/** What one finished command contributes to the counters. */
export interface CommandSample {
  readonly opcode: number;
  /** Service action for 0x7F (variable length) CDBs; ignored otherwise. */
  readonly serviceAction?: number;
  readonly status: number;
  readonly dataInBytes: number;
  readonly dataOutBytes: number;
  readonly latencyMs: number;
  /**
   * The collector's clock (performance.now() by default) at completion, when
   * the caller has read it already: saves a clock read per command.
   */
  readonly endedAt?: number;
}

/** Per opcode: 1 a medium read, 2 a medium write (0x7F is decided by its service action). */
const CLASS_OF = new Uint8Array(256);
for (const op of [0x08, 0x28, 0xa8, 0x88]) CLASS_OF[op] = 1;
// WRITE 6/10/12/16, WRITE AND VERIFY 10/12/16, WRITE SAME 10/16, COMPARE AND WRITE.
for (const op of [0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e, 0x41, 0x93, 0x89]) CLASS_OF[op] = 2;
const VARIABLE_LENGTH = 0x7f;
const SA_READ_32 = 0x0009;
const SA_WRITE_32 = 0x000b;
const SA_WRITE_SAME_32 = 0x000d;
const STATUS_GOOD = 0x00;
const STATUS_CONDITION_MET = 0x04;
const STATUS_TASK_ABORTED = 0x40;
const STATUS_CHECK_CONDITION = 0x02;
const STATUS_BUSY = 0x08;
const STATUS_TASK_SET_FULL = 0x28;

/** The status column of MetricsCollector.commandCounts(). */
export const STATUS_NAMES = [
  'good',
  'check_condition',
  'busy',
  'task_set_full',
  'task_aborted',
  'other',
] as const;
export type StatusName = (typeof STATUS_NAMES)[number];
const GROUPS: readonly CommandClass[] = ['read', 'write', 'other'];

const statusIndex = (status: number): number => {
  if (status === STATUS_GOOD || status === STATUS_CONDITION_MET) return 0;
  if (status === STATUS_CHECK_CONDITION) return 1;
  if (status === STATUS_BUSY) return 2;
  if (status === STATUS_TASK_SET_FULL) return 3;
  return status === STATUS_TASK_ABORTED ? 4 : 5;
};

/** Completed commands of one class with one status (MetricsCollector.commandCounts). */
export interface CommandCount {
  readonly group: CommandClass;
  readonly status: StatusName;
  readonly count: number;
}

export type CommandClass = 'read' | 'write' | 'other';

/** Classifies a CDB as a medium read, a medium write or anything else. */
export function classifyCommand(opcode: number, serviceAction?: number): CommandClass {
  const kind = CLASS_OF[opcode & 0xff];
  if (kind === 1) return 'read';
  if (kind === 2) return 'write';
  if (opcode === VARIABLE_LENGTH) {
    if (serviceAction === SA_READ_32) return 'read';
    if (serviceAction === SA_WRITE_32 || serviceAction === SA_WRITE_SAME_32) return 'write';
  }
  return 'other';
}

/** Width of one rate bucket; the rate is averaged over the last RATE_BUCKETS complete buckets. */
const RATE_BUCKET_MS = 250;
const RATE_BUCKETS = 4;

export interface MetricsOptions {
  /** Monotonic clock in ms (default performance.now); injectable for tests. */
  readonly now?: () => number;
}

/** Counters, rates and the latency histogram of one device (or any handler chain). */
export class MetricsCollector {
  readonly latency = new LatencyHistogram();
  readonly #now: () => number;
  readonly #startedAt: number;
  #commands = 0;
  #reads = 0;
  #writes = 0;
  #errors = 0;
  #aborted = 0;
  #bytesRead = 0;
  #bytesWritten = 0;
  #inFlight = 0;
  #maxInFlight = 0;
  /** Completions by class (read, write, other) × status (STATUS_NAMES). */
  readonly #byStatus = new Float64Array(GROUPS.length * STATUS_NAMES.length);
  /** CHECK CONDITIONs by sense key (0..15). */
  readonly #senseKeys = new Float64Array(16);
  // Rate window: per-bucket counts of commands, Data-In bytes, Data-Out bytes.
  readonly #rateCommands = new Float64Array(RATE_BUCKETS + 1);
  readonly #rateIn = new Float64Array(RATE_BUCKETS + 1);
  readonly #rateOut = new Float64Array(RATE_BUCKETS + 1);
  #rateEpoch: number;
  /** Counters kept outside JS (the ring's native lane, LANE_STATS layout) and what was seen of them. */
  #lane: Float64Array | undefined;
  #laneAwaiting: (() => number) | undefined;
  readonly #laneSeen = new Float64Array(4);
  #laneSeenAt = 0;

  constructor(options: MetricsOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#startedAt = this.#now();
    this.#rateEpoch = Math.floor(this.#startedAt / RATE_BUCKET_MS);
  }

  /** A command arrived. */
  started(): void {
    this.#inFlight++;
    if (this.#inFlight > this.#maxInFlight) this.#maxInFlight = this.#inFlight;
  }

  /** A command (counted by `started`) completed. */
  finished(sample: CommandSample): void {
    if (this.#inFlight > 0) this.#inFlight--;
    this.record(sample);
  }

  /** Count a finished command without touching `inFlight` (for middleware). */
  record(sample: CommandSample): void {
    this.count(
      sample.opcode,
      sample.serviceAction ?? 0,
      sample.status,
      sample.dataInBytes,
      sample.dataOutBytes,
      sample.latencyMs * 1000,
      sample.endedAt ?? this.#now(),
    );
  }

  /**
   * `finished()` without the sample object, what the device calls for every
   * command: latency in microseconds, the end on the collector's clock in ms.
   */
  completed(
    opcode: number,
    serviceAction: number,
    status: number,
    dataInBytes: number,
    dataOutBytes: number,
    latencyUs: number,
    endedAt: number,
  ): void {
    if (this.#inFlight > 0) this.#inFlight--;
    this.count(opcode, serviceAction, status, dataInBytes, dataOutBytes, latencyUs, endedAt);
  }

  /** The counting itself: integer additions and one histogram bucket, no allocation. */
  count(
    opcode: number,
    serviceAction: number,
    status: number,
    dataInBytes: number,
    dataOutBytes: number,
    latencyUs: number,
    endedAt: number,
  ): void {
    this.#commands++;
    let kind = CLASS_OF[opcode & 0xff];
    if (kind === 0 && opcode === VARIABLE_LENGTH) {
      if (serviceAction === SA_READ_32) kind = 1;
      else if (serviceAction === SA_WRITE_32 || serviceAction === SA_WRITE_SAME_32) kind = 2;
    }
    if (kind === 1) this.#reads++;
    else if (kind === 2) this.#writes++;
    // kind 1, 2, 0 → rows read, write, other
    this.#byStatus[((kind! + 2) % 3) * STATUS_NAMES.length + statusIndex(status)]!++;
    const ok = status === STATUS_GOOD || status === STATUS_CONDITION_MET;
    if (!ok) this.#errors++;
    if (status === STATUS_TASK_ABORTED) this.#aborted++;
    const dataOut = ok ? dataOutBytes : 0;
    this.#bytesRead += dataInBytes;
    this.#bytesWritten += dataOut;
    this.latency.recordUs(latencyUs);
    const slot = this.#advanceRate(endedAt);
    this.#rateCommands[slot]!++;
    this.#rateIn[slot]! += dataInBytes;
    this.#rateOut[slot]! += dataOut;
  }

  /**
   * Adds counters kept outside JS to every snapshot: `lane` is @tcmu/ring's
   * NativeLane.stats (LANE_STATS layout: reads, writes, bytes read, bytes
   * written, then the latency histogram). Commands the lane answered count
   * as GOOD reads and writes; its rates are spread over the time since they
   * were last looked at. `awaiting` counts the lane's commands still running
   * (in flight, though this recorder never saw them start).
   */
  includeLane(lane: Float64Array, awaiting?: () => number): void {
    this.#lane = lane;
    this.#laneAwaiting = awaiting;
    this.#laneSeenAt = this.#now();
    this.#laneSeen.set(lane.subarray(0, 4));
    this.latency.include(lane.subarray(4));
  }

  /** Moves what the lane did since the last look into the rate buckets elapsed meanwhile. */
  #absorbLane(now: number): void {
    const lane = this.#lane;
    if (lane === undefined) return;
    const seen = this.#laneSeen;
    const commands = lane[0]! + lane[1]! - seen[0]! - seen[1]!;
    if (commands === 0) return;
    const bytesIn = lane[2]! - seen[2]!;
    const bytesOut = lane[3]! - seen[3]!;
    seen.set(lane.subarray(0, 4));
    const size = RATE_BUCKETS + 1;
    const first = Math.max(
      Math.floor(this.#laneSeenAt / RATE_BUCKET_MS),
      Math.floor(now / RATE_BUCKET_MS) - RATE_BUCKETS,
    );
    const last = Math.floor(now / RATE_BUCKET_MS);
    this.#laneSeenAt = now;
    const span = last - first + 1;
    this.#advanceRate(now);
    for (let epoch = first; epoch <= last; epoch++) {
      const slot = epoch % size;
      this.#rateCommands[slot]! += commands / span;
      this.#rateIn[slot]! += bytesIn / span;
      this.#rateOut[slot]! += bytesOut / span;
    }
  }

  /** Rotate the rate ring to the current bucket; returns the current slot. */
  #advanceRate(now: number): number {
    const epoch = Math.floor(now / RATE_BUCKET_MS);
    const size = RATE_BUCKETS + 1;
    const steps = Math.min(epoch - this.#rateEpoch, size);
    for (let i = 1; i <= steps; i++) {
      const slot = (this.#rateEpoch + i) % size;
      this.#rateCommands[slot] = 0;
      this.#rateIn[slot] = 0;
      this.#rateOut[slot] = 0;
    }
    if (epoch > this.#rateEpoch) this.#rateEpoch = epoch;
    return this.#rateEpoch % size;
  }

  /** Averages over the complete buckets before the current one. */
  #rates(): { iops: number; readBytesPerSec: number; writeBytesPerSec: number } {
    this.#absorbLane(this.#now());
    const current = this.#advanceRate(this.#now());
    const size = RATE_BUCKETS + 1;
    const elapsed = this.#now() - this.#startedAt;
    // While the collector is younger than the window, average over what exists.
    const buckets = Math.max(1, Math.min(RATE_BUCKETS, Math.floor(elapsed / RATE_BUCKET_MS)));
    let commands = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    for (let i = 1; i <= buckets; i++) {
      const slot = (current - i + size) % size;
      commands += this.#rateCommands[slot]!;
      bytesIn += this.#rateIn[slot]!;
      bytesOut += this.#rateOut[slot]!;
    }
    const seconds = (buckets * RATE_BUCKET_MS) / 1000;
    return {
      iops: commands / seconds,
      readBytesPerSec: bytesIn / seconds,
      writeBytesPerSec: bytesOut / seconds,
    };
  }

  get inFlight(): number {
    return this.#inFlight + (this.#laneAwaiting?.() ?? 0);
  }

  /** A CHECK CONDITION answered with this sense key (UNIT ATTENTION 6, MEDIUM ERROR 3...). */
  senseKey(key: number): void {
    this.#senseKeys[key & 0x0f]!++;
  }

  /** CHECK CONDITIONs by sense key: index = key. */
  senseKeyCounts(): readonly number[] {
    return [...this.#senseKeys];
  }

  /** Completions by class and status; the native lane's commands are GOOD reads and writes. */
  commandCounts(): CommandCount[] {
    const lane = this.#lane;
    const counts: CommandCount[] = [];
    for (const [row, group] of GROUPS.entries()) {
      for (const [column, status] of STATUS_NAMES.entries()) {
        let count = this.#byStatus[row * STATUS_NAMES.length + column]!;
        if (column === 0 && row < 2) count += lane?.[row] ?? 0;
        if (count > 0) counts.push({ group, status, count });
      }
    }
    return counts;
  }

  snapshot(): DeviceStats {
    const lane = this.#lane;
    const laneReads = lane?.[0] ?? 0;
    const laneWrites = lane?.[1] ?? 0;
    return {
      commands: this.#commands + laneReads + laneWrites,
      reads: this.#reads + laneReads,
      writes: this.#writes + laneWrites,
      errors: this.#errors,
      aborted: this.#aborted,
      bytesRead: this.#bytesRead + (lane?.[2] ?? 0),
      bytesWritten: this.#bytesWritten + (lane?.[3] ?? 0),
      inFlight: this.inFlight,
      maxInFlight: Math.max(this.#maxInFlight, this.inFlight),
      ...this.#rates(),
      latency: this.latency.summary(),
      uptimeMs: this.#now() - this.#startedAt,
    };
  }
}
