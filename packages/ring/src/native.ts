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

/**
 * The consumer side of one TCMU ring (src/native/ring_engine.cc): walks and
 * checks entries, serves plain READ/WRITE in its lane, hands the rest to JS as
 * records and writes completions into the ring.
 */
export interface NativeRingEngine {
  /** External ArrayBuffer over the whole map; detached (length 0) after unmap(). */
  readonly buffer: ArrayBuffer;
  /** Handoff records, RECORD_WORDS u32 each (see RingRecord). */
  readonly records: ArrayBuffer;
  /** Int32 [gate]: LANE_GATE bits the lane must leave to JS. */
  readonly laneState: ArrayBuffer;
  /** Float64 LANE_STATS counters and latency histogram of the lane. */
  readonly laneStats: ArrayBuffer;
  /**
   * Uint32 completion queue (see QueuedCompletion): JS appends, the engine writes them into the
   * ring at its next walk or publish().
   */
  readonly completions: ArrayBuffer;
  /** The queued completions' sense bytes: ABI.senseBufferSize per queue position. */
  readonly completionSense: ArrayBuffer;
  /** Commands handed to JS and not completed. */
  readonly inFlight: number;
  /** An out-of-order completion went into a slot of another command still in flight. */
  readonly overtaken: boolean;
  start(cmdrOffset: number, cmdrSize: number, tail: number, mailboxFlags: number, maxInFlight: number): void;
  /** Walks now; returns the records written. Throws (code CORRUPT_RING, records) on a corrupt entry. */
  fetch(): number;
  /** The queued completions (JS's and the lane's), then one cmd_tail store and one kick if it moved. */
  publish(): boolean;
  configureLane(
    fd: number,
    blockSize: number,
    blockCount: number,
    maxTransferBlocks: number,
    masks: Uint8Array,
  ): void;
  stop(): void;
  /** After the kernel's reset_ring: forget every command and the failure, walk from `tail`. */
  restart(tail: number): void;
  unmap(): void;
}

/**
 * Layout of NativeRingEngine.completions (ring_engine.cc): word 0 is the number queued, then
 * `words` u32 per completion: id, status | uflags << 8 | sense length << 16, read_len, unused.
 */
export const QueuedCompletion = { words: 4 } as const;
/** Record layout of NativeRingEngine.records (ring_engine.cc). */
export const RingRecord = { words: 8, command: 1, tmr: 2 } as const;
/** NativeRingEngine.laneState[0] bits. */
export const LANE_GATE = { reads: 1, writes: 2 } as const;
/** Layout of NativeRingEngine.laneStats (Float64Array). */
export const LANE_STATS = {
  reads: 0,
  writes: 1,
  bytesRead: 2,
  bytesWritten: 3,
  latencyCount: 4,
  latencySumUs: 5,
  latencyMinUs: 6,
  latencyMaxUs: 7,
  /** 145 buckets, LatencyHistogram's layout */
  buckets: 8,
  /** commands whose data came in several iovecs (a fragmented data area) */
  scattered: 8 + 145,
  /** the ring's, not the lane's: walks that left entries waiting, maxInFlight commands being with JS */
  ringFull: 8 + 145 + 1,
} as const;
/** Lane opcodes in the order of configureLane's masks: READ/WRITE 6, 10, 12, 16. */
export const LANE_OPCODES = [0x08, 0x0a, 0x28, 0x2a, 0xa8, 0xaa, 0x88, 0x8a] as const;
export const LANE_MASK_STRIDE = 16;

export type RecordsCallback = (error: Error | null, records: number) => void;

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
  lockFile(fd: number, exclusive: boolean): void;
  Mapping: new (fd: number, length: number) => NativeMapping;
  Poller: new (fd: number, callback: PollCallback) => NativePoller;
  RingEngine: new (
    memoryFd: number,
    eventFd: number,
    mapSize: number,
    recordCapacity: number,
    callback: RecordsCallback,
  ) => NativeRingEngine;
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
  'lockFile',
  'Mapping',
  'Poller',
  'RingEngine',
] as const;

let cached: NativeAddon | undefined;

/** Package root: one level above src/ (sources) and dist/ (build). */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Loads build/Release/tcmu_ring.node (or a prebuild) once, checking its shape.
 * @throws AddonLoadError with the command that builds it.
 * @internal The raw addon is for this package's modules (and the simulator); the functions
 * exported beside it are the API.
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
        `Build it with: cd ${PACKAGE_ROOT} && node scripts/addon.mjs install ` +
        '(uses a prebuild when one fits, else compiles once with g++, make, python3 and the Node headers on the machine)',
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

/**
 * Locks a whole file for this open file description (F_OFD_SETLK): exclusive for a
 * writer, shared for readers. Another open of the file, in this process or another,
 * cannot take a conflicting lock; closing the fd (or dying) releases it.
 * @throws NativeError with code EAGAIN when someone else holds a conflicting lock
 */
export function lockFile(fd: number, options: { exclusive: boolean }): void {
  callNative(() => loadAddon().lockFile(fd, options.exclusive));
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
