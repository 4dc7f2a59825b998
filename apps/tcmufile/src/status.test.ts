import { describe, expect, it } from 'vitest';
import {
  type CounterSnapshot,
  formatCount,
  formatMegabytesPerSecond,
  formatStatusLine,
  LiveLine,
  ratesBetween,
} from './status.js';

const zero: CounterSnapshot = { commands: 0, bytesRead: 0, bytesWritten: 0, errors: 0, inFlight: 0 };

describe('ratesBetween', () => {
  it('divides the deltas by the elapsed time', () => {
    const later = { commands: 2000, bytesRead: 4_000_000, bytesWritten: 1_000_000, errors: 1, inFlight: 7 };
    expect(ratesBetween(zero, later, 2000)).toEqual({
      iops: 1000,
      readBytesPerSecond: 2_000_000,
      writeBytesPerSecond: 500_000,
      inFlight: 7,
      errors: 1,
      commands: 2000,
    });
  });
  it('treats a zero interval as no activity rather than dividing by zero', () => {
    const rates = ratesBetween(zero, { ...zero, commands: 5 }, 0);
    expect(rates.iops).toBe(0);
    expect(rates.commands).toBe(5);
  });
  it('counts from zero when a counter went backwards (reset)', () => {
    const rates = ratesBetween({ ...zero, commands: 100 }, { ...zero, commands: 10 }, 1000);
    expect(rates.iops).toBe(10);
  });
});

describe('formatting', () => {
  it.each([
    [0, '0'],
    [999.4, '999'],
    [1000, '1.00k'],
    [12_345, '12.3k'],
    [123_456, '123k'],
    [999_949, '1000k'],
    [999_950, '1.00M'],
    [2_500_000, '2.50M'],
    [Number.NaN, '0'],
    [-3, '0'],
  ])('formatCount(%d) = %s', (value, text) => {
    expect(formatCount(value)).toBe(text);
  });

  it('prints decimal MB/s', () => {
    expect(formatMegabytesPerSecond(0)).toBe('0.0 MB/s');
    expect(formatMegabytesPerSecond(12_345_678)).toBe('12.3 MB/s');
    expect(formatMegabytesPerSecond(2_500_000_000)).toBe('2500 MB/s');
    expect(formatMegabytesPerSecond(Number.POSITIVE_INFINITY)).toBe('0.0 MB/s');
  });

  it('builds the status line', () => {
    const line = formatStatusLine('/dev/sda vol0', {
      iops: 1234,
      readBytesPerSecond: 5_000_000,
      writeBytesPerSecond: 0,
      inFlight: 3,
      errors: 2,
      commands: 1234,
    });
    expect(line).toBe('/dev/sda vol0 | 1.23k IOPS | read 5.0 MB/s | write 0.0 MB/s | in flight 3 | errors 2');
  });
});

describe('LiveLine', () => {
  it('redraws in place and ends with a newline only if something was drawn', () => {
    const out: string[] = [];
    const line = new LiveLine((text) => out.push(text));
    line.finish();
    expect(out).toEqual([]);
    line.update('a long line');
    line.update('short');
    line.finish();
    expect(out).toEqual(['\ra long line\x1b[K', '\rshort\x1b[K', '\n']);
  });
});
