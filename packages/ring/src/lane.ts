import { sumLengths, views } from './command.js';
import { RingUsageError } from './errors.js';
import { LANE_GATE, LANE_MASK_STRIDE, LANE_OPCODES, LANE_STATS, type NativeRingEngine } from './native.js';

/**
 * Block I/O that finishes before it returns, for the lane on the JS thread (a
 * synchronous BlockBackend of @tcmu/scsi is one). A throw leaves the command to
 * JS, which retries it and answers the precise sense; a returned promise is
 * waited for (the command is then tracked like any other).
 */
export interface LaneBlockIo {
  read(lba: number, into: Uint8Array): void | Promise<void>;
  /** Absent: commands whose data came in several iovecs go to JS. */
  readv?(lba: number, into: readonly Uint8Array[]): void | Promise<void>;
  write(lba: number, data: Uint8Array, options: { readonly fua: boolean }): void | Promise<void>;
  writev?(lba: number, data: readonly Uint8Array[], options: { readonly fua: boolean }): void | Promise<void>;
}

/**
 * What the lane serves, read and written at block lba: a file (`fd`: natively,
 * preadv/pwritev on the ring's iovecs in the addon) or a synchronous block I/O
 * (`io`: on the JS thread, before a RingCommand is made). Exactly one of them.
 */
export interface LaneConfig {
  readonly fd?: number;
  readonly io?: LaneBlockIo;
  readonly blockSize: number;
  readonly blockCount: number;
  /** Longer transfers go to JS (0: no limit). */
  readonly maxTransferBlocks: number;
  /**
   * The READ/WRITE 6/10/12/16 opcodes the lane may serve, each with the CDB bits
   * (bytes 1..n-1) that must be zero for it to; any other opcode, and any
   * command with one of those bits set, goes to JS.
   */
  readonly opcodes: ReadonlyMap<number, Uint8Array>;
}

/** Counters of what the lane served (cumulative). */
export interface LaneCounters {
  readonly reads: number;
  readonly writes: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** of those, commands whose data came in several iovecs */
  readonly scattered: number;
}

/**
 * The ring's lane: plain READ/WRITE answered inside the addon with
 * preadv/pwritev straight on the ring's iovecs, without a JS call (`fd`), or on
 * the JS thread without a command object (`io`). It only
 * ever answers GOOD, exactly as the emulation would; everything else (other
 * opcodes, flagged CDBs, out-of-range or oversized transfers, I/O errors) goes
 * to JS. The gate is how the owner keeps commands away while the emulation has
 * state a plain command must see (a unit attention, an exclusive range lock...):
 * it is read before every command. Off until configured; the gate starts closed.
 */
export class NativeLane {
  /** LANE_STATS layout: counters, then the latency histogram of the lane's commands. */
  readonly stats: Float64Array;
  readonly #engine: NativeRingEngine;
  readonly #gate: Int32Array;
  #configured = false;
  #awaiting = 0;
  /** @internal the lane on the JS thread, when configured with `io` (TcmuRing calls it) */
  js: JsLane | undefined;

  /** @internal */
  constructor(engine: NativeRingEngine) {
    this.#engine = engine;
    this.#gate = new Int32Array(engine.laneState);
    this.stats = new Float64Array(engine.laneStats);
  }

  get configured(): boolean {
    return this.#configured;
  }

  /** Serve `config`'s file or block I/O (undefined: stop). */
  configure(config: LaneConfig | undefined): void {
    const off = new Uint8Array(LANE_OPCODES.length * LANE_MASK_STRIDE);
    if (config === undefined) {
      this.#engine.configureLane(-1, 0, 0, 0, off);
      this.js = undefined;
      this.#configured = false;
      return;
    }
    const { fd, io, blockSize, blockCount, maxTransferBlocks } = config;
    if ((fd === undefined) === (io === undefined)) {
      throw new RingUsageError('the lane serves either a file (fd) or a block I/O (io): give exactly one');
    }
    for (const [name, value] of Object.entries({ fd: fd ?? 0, blockSize, blockCount, maxTransferBlocks })) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RingUsageError(`lane ${name} must be a non-negative integer, got ${value}`);
      }
    }
    if (blockSize === 0) throw new RingUsageError('lane blockSize must be positive');
    if (io !== undefined && (typeof io.read !== 'function' || typeof io.write !== 'function')) {
      throw new RingUsageError('lane io must have read() and write()');
    }
    const masks = new Uint8Array(LANE_OPCODES.length * LANE_MASK_STRIDE);
    LANE_OPCODES.forEach((opcode, index) => {
      const mask = config.opcodes.get(opcode);
      if (mask === undefined) return;
      if (mask.length > LANE_MASK_STRIDE)
        throw new RingUsageError(`lane mask of 0x${opcode.toString(16)} is too long`);
      masks.set(mask, index * LANE_MASK_STRIDE);
      masks[index * LANE_MASK_STRIDE] = 1; // byte 0 (the opcode) marks the row as served
    });
    if (io === undefined) {
      this.js = undefined;
      this.#engine.configureLane(fd!, blockSize, blockCount, maxTransferBlocks, masks);
    } else {
      this.#engine.configureLane(-1, 0, 0, 0, off);
      this.js = new JsLane(io, blockSize, blockCount, maxTransferBlocks, masks, this.#gate, this.stats);
    }
    this.#configured = true;
  }

  /**
   * Transfers of the lane on the JS thread still running: the block I/O returned
   * a promise (their commands are in the ring's commandsInFlight(), not the owner's).
   */
  get awaiting(): number {
    return this.#awaiting;
  }

  /** @internal TcmuRing counts the transfers it waits for */
  countAwaiting(delta: 1 | -1): void {
    this.#awaiting += delta;
  }

  /** Which commands the lane must leave to JS right now. */
  get gate(): { readonly reads: boolean; readonly writes: boolean } {
    const bits = this.#gate[0]!;
    return { reads: (bits & LANE_GATE.reads) === 0, writes: (bits & LANE_GATE.writes) === 0 };
  }

  /** Opens or closes the lane for reads and writes (takes effect for the next command). */
  setGate(reads: boolean, writes: boolean): void {
    this.#gate[0] = (reads ? 0 : LANE_GATE.reads) | (writes ? 0 : LANE_GATE.writes);
  }

  counters(): LaneCounters {
    const s = this.stats;
    return {
      reads: s[LANE_STATS.reads]!,
      writes: s[LANE_STATS.writes]!,
      bytesRead: s[LANE_STATS.bytesRead]!,
      bytesWritten: s[LANE_STATS.bytesWritten]!,
      scattered: s[LANE_STATS.scattered]!,
    };
  }
}

const NO_FUA = Object.freeze({ fua: false });
/** JsLane.serve: the command is not the lane's (it goes to JS as a RingCommand) */
export const NOT_SERVED = -1;

/**
 * The lane on the JS thread: the same checks as the addon's ServeInLane
 * (ring_engine.cc), in the same order, then one call of the block I/O on views
 * of the ring's iovecs. Reads the CDB where the kernel put it: nothing is copied
 * and nothing is allocated but the data view.
 * @internal
 */
export class JsLane {
  readonly #io: LaneBlockIo;
  readonly #blockSize: number;
  readonly #blockCount: number;
  readonly #maxBlocks: number;
  readonly #masks: Uint8Array;
  readonly #gate: Int32Array;
  readonly #stats: Float64Array;

  constructor(
    io: LaneBlockIo,
    blockSize: number,
    blockCount: number,
    maxBlocks: number,
    masks: Uint8Array,
    gate: Int32Array,
    stats: Float64Array,
  ) {
    this.#io = io;
    this.#blockSize = blockSize;
    this.#blockCount = blockCount;
    this.#maxBlocks = maxBlocks;
    this.#masks = masks;
    this.#gate = gate;
    this.#stats = stats;
  }

  /**
   * Serves the command whose CDB is at `cdb` in `bytes` (the map, whose `buffer` is
   * passed too: the getter is a runtime call) and whose data is
   * the main iovec (`base`, `length`) or the `iov` pairs. Returns NOT_SERVED, the
   * bytes of Data-In produced (0 for a write), or the backend's promise.
   */
  serve(
    bytes: Uint8Array,
    buffer: ArrayBuffer,
    cdb: number,
    base: number,
    length: number,
    iov: number[] | undefined,
  ): number | Promise<void> {
    const opcode = bytes[cdb]!;
    const index = LANE_ROWS[opcode]!;
    if (index < 0) return NOT_SERVED;
    const row = index * LANE_MASK_STRIDE;
    const masks = this.#masks;
    const write = (opcode & 0x02) !== 0;
    if (masks[row] === 0 || (this.#gate[0]! & (write ? LANE_GATE.writes : LANE_GATE.reads)) !== 0) {
      return NOT_SERVED;
    }
    // the lane's opcodes are of groups 0 (6 bytes), 1 (10), 4 (16) and 5 (12)
    const cdbLength = opcode < 0x20 ? 6 : opcode < 0x80 ? 10 : opcode < 0xa0 ? 16 : 12;
    for (let i = 1; i < cdbLength; i++) if ((bytes[cdb + i]! & masks[row + i]!) !== 0) return NOT_SERVED;
    let lba: number;
    let blocks: number;
    if (cdbLength === 6) {
      // SBC-4 5.10: 21-bit LBA, TRANSFER LENGTH 0 means 256 blocks
      lba = ((bytes[cdb + 1]! & 0x1f) << 16) | (bytes[cdb + 2]! << 8) | bytes[cdb + 3]!;
      blocks = bytes[cdb + 4]! === 0 ? 256 : bytes[cdb + 4]!;
    } else if (cdbLength === 10) {
      lba = be32(bytes, cdb + 2);
      blocks = (bytes[cdb + 7]! << 8) | bytes[cdb + 8]!;
    } else if (cdbLength === 12) {
      lba = be32(bytes, cdb + 2);
      blocks = be32(bytes, cdb + 6);
    } else {
      // above 2^53 it rounds, but stays above any blockCount
      lba = be32(bytes, cdb + 2) * 0x1_0000_0000 + be32(bytes, cdb + 6);
      blocks = be32(bytes, cdb + 10);
    }
    const maxBlocks = this.#maxBlocks;
    if (blocks === 0 || (maxBlocks > 0 && blocks > maxBlocks)) return NOT_SERVED;
    if (lba > this.#blockCount || blocks > this.#blockCount - lba) return NOT_SERVED;
    const total = iov === undefined ? length : sumLengths(iov);
    if (total !== blocks * this.#blockSize) return NOT_SERVED;
    const io = this.#io;
    let pending: void | Promise<void>;
    try {
      if (iov === undefined) {
        const view = new Uint8Array(buffer, base, length);
        pending = write ? io.write(lba, view, NO_FUA) : io.read(lba, view);
      } else {
        if ((write ? io.writev : io.readv) === undefined) return NOT_SERVED;
        const segments = views(buffer, iov);
        pending = write ? io.writev!(lba, segments, NO_FUA) : io.readv!(lba, segments);
      }
    } catch {
      return NOT_SERVED; // JS retries it and answers the precise sense
    }
    const scattered = iov !== undefined;
    if (pending !== undefined) return pending.then(() => this.#count(write, total, scattered));
    this.#count(write, total, scattered);
    return write ? 0 : total;
  }

  #count(write: boolean, bytes: number, scattered: boolean): void {
    const stats = this.#stats;
    add(stats, write ? LANE_STATS.writes : LANE_STATS.reads, 1);
    add(stats, write ? LANE_STATS.bytesWritten : LANE_STATS.bytesRead, bytes);
    if (scattered) add(stats, LANE_STATS.scattered, 1);
  }

  /** One latency per batch for the lane's commands, as the addon records one per walk (RecordLatency). */
  recordLatency(us: number, count: number): void {
    const stats = this.#stats;
    add(stats, LANE_STATS.latencyCount, count);
    add(stats, LANE_STATS.latencySumUs, us * count);
    if (us < stats[LANE_STATS.latencyMinUs]!) stats[LANE_STATS.latencyMinUs] = us;
    if (us > stats[LANE_STATS.latencyMaxUs]!) stats[LANE_STATS.latencyMaxUs] = us;
    add(stats, LANE_STATS.buckets + bucketOf(us), count);
  }
}

/** The row of each opcode in the masks (LANE_OPCODES order), -1 for other opcodes. */
const LANE_ROWS = new Int8Array(256).fill(-1);
LANE_OPCODES.forEach((opcode, index) => {
  LANE_ROWS[opcode] = index;
});

const BUCKETS = LANE_STATS.scattered - LANE_STATS.buckets;
/** The addon's BucketOf (LatencyHistogram's layout: 4 buckets an octave from 1 us). */
function bucketOf(us: number): number {
  if (!(us >= 1)) return 0;
  let index = Math.ceil(Math.log2(us) * 4 + 1e-9);
  if (index < BUCKETS - 1 && 2 ** (index / 4) <= us) index++;
  return Math.min(index, BUCKETS - 1);
}

const add = (stats: Float64Array, index: number, value: number): void => {
  stats[index] = stats[index]! + value;
};

const be32 = (bytes: Uint8Array, at: number): number =>
  ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
