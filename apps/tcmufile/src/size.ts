import { UsageError } from './errors.js';

const unitShift: Record<string, number> = { '': 0, K: 10, M: 20, G: 30, T: 40, P: 50 };

/**
 * Parses a byte size: a whole number with an optional binary suffix, `512`, `4K`, `1M`, `1G`,
 * `1T` (also `4KiB`, `1g`, `1GB`: suffixes are powers of 1024 either way). Zero, negatives,
 * fractions and sizes beyond 2^53 are refused.
 */
export function parseSize(text: string, what = 'size'): number {
  const trimmed = text.trim();
  if (trimmed.startsWith('-')) throw new UsageError(`${what} must be positive, got '${text}'`);
  const match = /^(\d+)\s*([KMGTP]?)(?:I?B)?$/i.exec(trimmed);
  if (!match) {
    throw new UsageError(`${what} '${text}' is not a size`, {
      fix: 'write a whole number of bytes, optionally with K, M, G or T (powers of 1024): 512, 4K, 1G',
    });
  }
  const digits = match[1]!;
  const shift = unitShift[(match[2] ?? '').toUpperCase()] ?? 0;
  const bytes = BigInt(digits) << BigInt(shift);
  if (bytes === 0n) throw new UsageError(`${what} must be greater than zero, got '${text}'`);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new UsageError(`${what} '${text}' is too large`);
  return Number(bytes);
}

/** The block sizes a TCMU disk can have here (the kernel accepts 512..4096; we serve these two). */
export const blockSizes = [512, 4096] as const;
export type BlockSize = (typeof blockSizes)[number];

export function parseBlockSize(text: string): BlockSize {
  const bytes = parseSize(text, 'block size');
  const found = blockSizes.find((size) => size === bytes);
  if (found === undefined) throw new UsageError(`block size must be 512 or 4096, got '${text}'`);
  return found;
}

/** A disk must hold whole blocks: dev_size is a multiple of hw_block_size (SBC-4 4.5). */
export function checkDeviceSize(bytes: number, blockSize: BlockSize, what = 'size'): void {
  if (bytes % blockSize !== 0) {
    throw new UsageError(`${what} ${bytes} bytes is not a multiple of the ${blockSize}-byte block size`, {
      fix: `use a multiple of ${blockSize}, e.g. ${Math.max(1, Math.floor(bytes / blockSize)) * blockSize}`,
    });
  }
}

/** 1073741824 → "1 GiB", 1536 → "1.5 KiB": for messages. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const rounded = String(Number(value.toFixed(value < 10 ? 2 : 1)));
  return `${rounded} ${units[unit]}`;
}
