import type { Device, DeviceState } from './device.js';

/** A sample as prom-client's Registry formats it (`metricName` for a histogram's _bucket/_sum/_count). */
export interface PromSample {
  readonly value: number;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly metricName?: string;
}

/** prom-client's metric interface, structurally: what Registry.registerMetric() and metrics() use. */
export interface PromMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly aggregator: 'sum';
  get(): Promise<{
    name: string;
    help: string;
    type: 'counter' | 'gauge' | 'histogram';
    aggregator: 'sum';
    values: PromSample[];
  }>;
  reset(): void;
}

/** The part of a prom-client Registry the device metrics need (so @tcmu/device does not import prom-client). */
export interface PromRegistry {
  /**
   * Takes a PromMetric. Typed `never` because prom-client declares the parameter as the union
   * of its own metric classes, which no plain object matches; what it reads is PromMetric.
   */
  registerMetric(metric: never): void;
}

export interface DeviceMetricsOptions {
  /** Metric name prefix (default `tcmu_`). */
  readonly prefix?: string;
}

const STATES: readonly DeviceState[] = [
  'new',
  'opening',
  'ready',
  'recovering',
  'closing',
  'closed',
  'failed',
];
const SENSE_KEYS = [
  'no_sense',
  'recovered_error',
  'not_ready',
  'medium_error',
  'hardware_error',
  'illegal_request',
  'unit_attention',
  'data_protect',
  'blank_check',
  'vendor_specific',
  'copy_aborted',
  'aborted_command',
  'reserved',
  'volume_overflow',
  'miscompare',
  'completed',
];
/** Latency histogram bounds in seconds (50 µs to 10 s). */
const LATENCY_BOUNDS_S = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
];

/**
 * Registers the metrics of `devices` (one Device, or a function giving the current ones: they
 * are read at every scrape) on a prom-client Registry: commands by class and status, bytes,
 * commands in flight, CHECK CONDITIONs by sense key (unit attentions, medium and hardware
 * errors), a latency histogram, the device state, size, ring-full events and ring recoveries. Each sample has
 * a `device` label. Read at scrape time from Device.metrics and stats(): nothing on the data path.
 */
export function registerDeviceMetrics(
  registry: PromRegistry,
  devices: Device | (() => Iterable<Device>),
  options: DeviceMetricsOptions = {},
): void {
  const prefix = options.prefix ?? 'tcmu_';
  const current = typeof devices === 'function' ? devices : () => [devices];
  const define = (
    name: string,
    help: string,
    type: PromMetric['type'],
    samples: (device: Device) => PromSample[],
  ): void => {
    const full = `${prefix}${name}`;
    const metric: PromMetric = {
      name: full,
      help,
      type,
      aggregator: 'sum',
      async get() {
        const values: PromSample[] = [];
        for (const device of current()) {
          for (const sample of samples(device)) {
            values.push({ ...sample, labels: { device: device.name, ...sample.labels } });
          }
        }
        return { name: full, help, type, aggregator: 'sum', values };
      },
      // Counters come from the devices; a registry reset has nothing of its own to clear.
      reset() {},
    };
    registry.registerMetric(metric as never);
  };
  define('commands_total', 'SCSI commands completed, by command class and status.', 'counter', (device) =>
    device.metrics
      .commandCounts()
      .map(({ group, status, count }) => ({ value: count, labels: { group, status } })),
  );
  define('read_bytes_total', 'Data-In bytes returned to initiators.', 'counter', (device) => [
    { value: device.stats().bytesRead, labels: {} },
  ]);
  define('written_bytes_total', 'Data-Out bytes of commands that completed GOOD.', 'counter', (device) => [
    { value: device.stats().bytesWritten, labels: {} },
  ]);
  define('commands_in_flight', 'Commands received and not yet completed.', 'gauge', (device) => [
    { value: device.metrics.inFlight, labels: {} },
  ]);
  define(
    'check_conditions_total',
    'CHECK CONDITION answers by sense key (unit_attention, medium_error: backend errors...).',
    'counter',
    (device) =>
      device.metrics
        .senseKeyCounts()
        .flatMap((value, key) => (value > 0 ? [{ value, labels: { sense_key: SENSE_KEYS[key]! } }] : [])),
  );
  define(
    'command_latency_seconds',
    'Command latency from ring arrival to completion.',
    'histogram',
    (device) => latencySamples(device, `${prefix}command_latency_seconds`),
  );
  define('device_state', 'The device state: 1 for the current one.', 'gauge', (device) =>
    STATES.map((state) => ({ value: device.state === state ? 1 : 0, labels: { state } })),
  );
  define('device_size_bytes', 'The capacity served (changes with resize()).', 'gauge', (device) => [
    { value: device.blockCount * device.blockSize, labels: {} },
  ]);
  define(
    'ring_full_total',
    'Ring walks that left commands waiting, queueDepth being in flight (BUSY answers: commands_total).',
    'counter',
    (device) => [{ value: device.ringFullEvents, labels: {} }],
  );
  define('ring_recoveries_total', 'Corrupt rings reset and served again.', 'counter', (device) => [
    { value: device.recoveries, labels: {} },
  ]);
}

/** Cumulative `le` buckets from the log-scale histogram: a bucket counts under the first bound at or above its upper edge. */
function latencySamples(device: Device, name: string): PromSample[] {
  const histogram = device.metrics.latency;
  const buckets = histogram.buckets();
  const samples: PromSample[] = [];
  let index = 0;
  let cumulative = 0;
  for (const bound of LATENCY_BOUNDS_S) {
    while (index < buckets.length && buckets[index]!.leMs / 1000 <= bound)
      cumulative += buckets[index++]!.count;
    samples.push({ metricName: `${name}_bucket`, value: cumulative, labels: { le: bound } });
  }
  const summary = histogram.summary();
  samples.push({ metricName: `${name}_bucket`, value: summary.count, labels: { le: '+Inf' } });
  samples.push({ metricName: `${name}_sum`, value: (summary.meanMs * summary.count) / 1000, labels: {} });
  samples.push({ metricName: `${name}_count`, value: summary.count, labels: {} });
  return samples;
}
