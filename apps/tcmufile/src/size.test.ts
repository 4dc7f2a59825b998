import { describe, expect, it } from 'vitest';
import { ExitCode, UsageError } from './errors.js';
import { checkDeviceSize, formatBytes, parseBlockSize, parseSize } from './size.js';

describe('parseSize', () => {
  it.each([
    ['512', 512],
    ['4K', 4096],
    ['4k', 4096],
    ['4KiB', 4096],
    ['1M', 1 << 20],
    ['1G', 1 << 30],
    ['1g', 1 << 30],
    ['1GB', 1 << 30],
    ['1T', 2 ** 40],
    ['3T', 3 * 2 ** 40],
    [' 64M ', 64 << 20],
    ['1536M', 1536 << 20],
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each([
    '0',
    '0G',
    '-1',
    '-4K',
    '1.5G',
    'G',
    '',
    'abc',
    '1X',
    '1 2',
    '0x100',
    '1e9',
  ])('rejects %j with a usage error', (text) => {
    expect(() => parseSize(text)).toThrow(UsageError);
  });

  it('says why: zero, negative, not a size', () => {
    expect(() => parseSize('0')).toThrow(/greater than zero/);
    expect(() => parseSize('-1G', '--size')).toThrow("--size must be positive, got '-1G'");
    expect(() => parseSize('lots')).toThrow(/is not a size/);
  });

  it('refuses sizes beyond 2^53 bytes', () => {
    expect(parseSize('7P')).toBe(7 * 2 ** 50);
    expect(() => parseSize('8P')).toThrow(/too large/);
    expect(() => parseSize('99999999999999999999')).toThrow(/too large/);
  });

  it('is a usage error (exit 64)', () => {
    try {
      parseSize('nope');
      expect.unreachable();
    } catch (error) {
      expect((error as UsageError).exitCode).toBe(ExitCode.usage);
    }
  });
});

describe('parseBlockSize', () => {
  it('accepts 512 and 4096 (also 4K)', () => {
    expect(parseBlockSize('512')).toBe(512);
    expect(parseBlockSize('4096')).toBe(4096);
    expect(parseBlockSize('4K')).toBe(4096);
  });
  it.each(['1024', '2048', '8K', '0', '256'])('rejects %s', (text) => {
    expect(() => parseBlockSize(text)).toThrow(UsageError);
  });
});

describe('checkDeviceSize', () => {
  it('accepts whole blocks', () => {
    expect(() => checkDeviceSize(4096, 4096)).not.toThrow();
    expect(() => checkDeviceSize(512, 512)).not.toThrow();
    expect(() => checkDeviceSize(1 << 30, 4096)).not.toThrow();
  });
  it('rejects a size that is not a multiple of the block size, suggesting one that is', () => {
    expect(() => checkDeviceSize(512, 4096)).toThrow(
      /512 bytes is not a multiple of the 4096-byte block size/,
    );
    expect(() => checkDeviceSize(1000, 512)).toThrow(UsageError);
    try {
      checkDeviceSize(10_000, 4096);
    } catch (error) {
      expect((error as UsageError).fix).toContain('8192');
    }
  });
});

describe('formatBytes', () => {
  it.each([
    [512, '512 B'],
    [1536, '1.5 KiB'],
    [1 << 30, '1 GiB'],
    [2 ** 40, '1 TiB'],
    [123 * 2 ** 20, '123 MiB'],
  ])('%d → %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
