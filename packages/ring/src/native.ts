import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { AddonLoadError, NativeError } from './errors.js';

/** A shared mapping of a file descriptor (MAP_SHARED, read/write). */
export interface NativeMapping {
  /** External ArrayBuffer over the mapping; detached (length 0) after unmap(). */
  readonly buffer: ArrayBuffer;
  readonly length: number;
  /** __atomic_load_n(u32 at offset, ACQUIRE) */
  loadAcquire(offset: number): number;
  /** __atomic_store_n(u32 at offset, value, RELEASE) */
  storeRelease(offset: number, value: number): void;
  /** Detaches every view, then munmap. Idempotent. */
  unmap(): void;
}

/** uv_poll on an fd: on readable, drains 4-byte events and calls back. */
export interface NativePoller {
  close(): void;
  ref(): void;
  unref(): void;
}

export type PollCallback = (error: Error | null, events: number) => void;

export interface NativeAddon {
  openUio(path: string): number;
  memfdCreate(name: string): number;
  socketPair(): [number, number];
  closeFd(fd: number): void;
  kick(fd: number): boolean;
  /** Events drained, or -1 at end of file. */
  drainEvents(fd: number): number;
  punchHole(fd: number, offset: number, length: number): void;
  zeroRange(fd: number, offset: number, length: number): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  Mapping: new (fd: number, length: number) => NativeMapping;
  Poller: new (fd: number, callback: PollCallback) => NativePoller;
}

const EXPECTED_FUNCTIONS = [
  'openUio',
  'memfdCreate',
  'socketPair',
  'closeFd',
  'kick',
  'drainEvents',
  'punchHole',
  'zeroRange',
  'mknod',
  'Mapping',
  'Poller',
] as const;

let cached: NativeAddon | undefined;

/** Package root: one level above src/ (sources) and dist/ (build). */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Loads build/Release/tcmu_ring.node (or a prebuild) once, checking its shape.
 * @throws AddonLoadError with the command that builds it.
 */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  let addon: unknown;
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    addon = nodeGypBuild(PACKAGE_ROOT);
  } catch (error) {
    throw new AddonLoadError(
      `the @tcmu/ring native addon is not built (${(error as Error).message}). ` +
        `Build it with: cd ${PACKAGE_ROOT} && npx node-gyp rebuild ` +
        '(needs g++, make, python3 and Node headers; offline: export npm_config_nodedir=/usr)',
      { cause: error },
    );
  }
  for (const name of EXPECTED_FUNCTIONS) {
    if (typeof (addon as Record<string, unknown>)[name] !== 'function') {
      throw new AddonLoadError(`the @tcmu/ring native addon is stale: '${name}' is missing; rebuild it`);
    }
  }
  cached = addon as NativeAddon;
  return cached;
}

/** Runs a native call, turning its system errors into NativeError. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw NativeError.from(error);
  }
}

// Thin, typed helpers later layers use.

/** fallocate(PUNCH_HOLE | KEEP_SIZE): deallocates a byte range of a file (reads return zeros). */
export function punchHole(fd: number, offset: number, length: number): void {
  callNative(() => loadAddon().punchHole(fd, offset, length));
}

/** fallocate(ZERO_RANGE | KEEP_SIZE): zeroes a byte range, keeping it allocated. */
export function zeroRange(fd: number, offset: number, length: number): void {
  callNative(() => loadAddon().zeroRange(fd, offset, length));
}

const S_IFBLK = 0o060000;
const S_IFCHR = 0o020000;

/** mknod(2) for a block (default) or character device node; `permissions` e.g. 0o660. */
export function mknod(
  path: string,
  major: number,
  minor: number,
  options: { type?: 'block' | 'char'; permissions?: number } = {},
): void {
  const type = options.type === 'char' ? S_IFCHR : S_IFBLK;
  const permissions = options.permissions ?? 0o660;
  callNative(() => loadAddon().mknod(path, type | (permissions & 0o7777), major, minor));
}

/** memfd_create(name, MFD_CLOEXEC). */
export function memfdCreate(name: string): number {
  return callNative(() => loadAddon().memfdCreate(name));
}

/** A non-blocking AF_UNIX SOCK_SEQPACKET pair: stands in for a UIO fd. */
export function socketPair(): [number, number] {
  return callNative(() => loadAddon().socketPair());
}

/** close(2) on an fd this package created (no fs bookkeeping, safe in worker threads). */
export function closeFd(fd: number): void {
  callNative(() => loadAddon().closeFd(fd));
}

/** Maps `length` bytes of `fd` shared, read/write. */
export function mapFd(fd: number, length: number): NativeMapping {
  return callNative(() => new (loadAddon().Mapping)(fd, length));
}
