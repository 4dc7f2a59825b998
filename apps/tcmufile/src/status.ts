/** Cumulative device counters, as sampled from the device's stats(). */
export interface CounterSnapshot {
  commands: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
  inFlight: number;
}

/** Activity between two snapshots. */
export interface Rates {
  iops: number;
  readBytesPerSecond: number;
  writeBytesPerSecond: number;
  inFlight: number;
  /** Cumulative, not a rate: an error is worth seeing until the end. */
  errors: number;
  /** Commands in the interval. */
  commands: number;
}

export function ratesBetween(previous: CounterSnapshot, current: CounterSnapshot, elapsedMs: number): Rates {
  const seconds = elapsedMs > 0 ? elapsedMs / 1000 : Number.POSITIVE_INFINITY;
  // Counters only grow; a smaller value means the source was reset: count from zero.
  const delta = (now: number, before: number) => (now >= before ? now - before : now);
  const commands = delta(current.commands, previous.commands);
  return {
    iops: commands / seconds,
    readBytesPerSecond: delta(current.bytesRead, previous.bytesRead) / seconds,
    writeBytesPerSecond: delta(current.bytesWritten, previous.bytesWritten) / seconds,
    inFlight: current.inFlight,
    errors: current.errors,
    commands,
  };
}

/** 950 → "950", 12345 → "12.3k", 2500000 → "2.50M". */
export function formatCount(value: number): string {
  if (!Number.isFinite(value) || value < 0) return '0';
  if (value < 1000) return String(Math.round(value));
  if (value < 999_950) return `${trim3(value / 1000)}k`;
  return `${trim3(value / 1e6)}M`;
}

/** Three significant digits: 1.23, 12.3, 123. */
function trim3(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** Decimal megabytes per second (as fio and dd print them), one decimal. */
export function formatMegabytesPerSecond(bytesPerSecond: number): string {
  const value = Number.isFinite(bytesPerSecond) && bytesPerSecond > 0 ? bytesPerSecond / 1e6 : 0;
  return `${value.toFixed(value >= 1000 ? 0 : 1)} MB/s`;
}

/** "/dev/sda vol0 | 1.23k IOPS | read 12.3 MB/s | write 0.0 MB/s | in flight 3 | errors 0" */
export function formatStatusLine(label: string, rates: Rates): string {
  return [
    label,
    `${formatCount(rates.iops)} IOPS`,
    `read ${formatMegabytesPerSecond(rates.readBytesPerSecond)}`,
    `write ${formatMegabytesPerSecond(rates.writeBytesPerSecond)}`,
    `in flight ${rates.inFlight}`,
    `errors ${rates.errors}`,
  ].join(' | ');
}

/**
 * A line redrawn in place on a terminal: carriage return, the text, then erase to the end of
 * the line (ESC [ K) so a shorter line leaves no tail of the previous one.
 */
export class LiveLine {
  #drawn = false;
  constructor(private readonly write: (text: string) => void) {}

  update(text: string): void {
    this.write(`\r${text}\x1b[K`);
    this.#drawn = true;
  }

  /** Ends the live line so later output starts on a fresh line. */
  finish(): void {
    if (this.#drawn) this.write('\n');
    this.#drawn = false;
  }
}

/** What `tcmufile status` shows of one running serve (the control socket's status answer). */
export interface StatusReport {
  name: string;
  pid: number;
  state: string;
  uptimeS: number;
  image: string;
  sizeBytes: number;
  blockSize: number;
  readOnly: boolean;
  disk: string | undefined;
  node: string | undefined;
  commands: number;
  errors: number;
  inFlight: number;
  bytesRead: number;
  bytesWritten: number;
  iops: number;
  readBytesPerSec: number;
  writeBytesPerSec: number;
  latency: { p50Ms: number; p90Ms: number; p99Ms: number; p999Ms: number; maxMs: number } | undefined;
}

/** "1h02m", "3m05s", "12s". */
export function formatUptime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h > 0) return `${h}h${pad(m)}m`;
  if (m > 0) return `${m}m${pad(s % 60)}s`;
  return `${s}s`;
}

/** Three lines per serve: identity, rates, latency percentiles. */
export function formatStatusReport(report: StatusReport): string {
  const paths =
    report.node && report.disk ? `${report.node} -> ${report.disk}` : (report.node ?? report.disk ?? '-');
  const rates: Rates = {
    iops: report.iops,
    readBytesPerSecond: report.readBytesPerSec,
    writeBytesPerSecond: report.writeBytesPerSec,
    inFlight: report.inFlight,
    errors: report.errors,
    commands: report.commands,
  };
  const ms = (value: number) => `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ms`;
  const latency = report.latency;
  return [
    `${report.name}  ${report.state}  up ${formatUptime(report.uptimeS)}  pid ${report.pid}  ${paths}  ${report.image} (${report.sizeBytes} bytes${report.readOnly ? ', read-only' : ''})`,
    `  ${formatStatusLine(`${formatCount(report.commands)} commands`, rates)}`,
    latency === undefined
      ? '  latency: not measured'
      : `  latency p50 ${ms(latency.p50Ms)} | p90 ${ms(latency.p90Ms)} | p99 ${ms(latency.p99Ms)} | p99.9 ${ms(latency.p999Ms)} | max ${ms(latency.maxMs)}`,
  ].join('\n');
}
