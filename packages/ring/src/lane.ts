import { RingUsageError } from './errors.js';
import { LANE_GATE, LANE_MASK_STRIDE, LANE_OPCODES, LANE_STATS, type NativeRingEngine } from './native.js';

/** What the native lane serves: one file, read and written at byte lba * blockSize. */
export interface LaneConfig {
  readonly fd: number;
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
 * The ring's native lane: plain READ/WRITE answered inside the addon with
 * preadv/pwritev straight on the ring's iovecs, without a JS call. It only
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

  /** @internal */
  constructor(engine: NativeRingEngine) {
    this.#engine = engine;
    this.#gate = new Int32Array(engine.laneState);
    this.stats = new Float64Array(engine.laneStats);
  }

  get configured(): boolean {
    return this.#configured;
  }

  /** Serve `config`'s file (undefined: stop). */
  configure(config: LaneConfig | undefined): void {
    if (config === undefined) {
      this.#engine.configureLane(-1, 0, 0, 0, new Uint8Array(LANE_OPCODES.length * LANE_MASK_STRIDE));
      this.#configured = false;
      return;
    }
    const { fd, blockSize, blockCount, maxTransferBlocks } = config;
    for (const [name, value] of Object.entries({ fd, blockSize, blockCount, maxTransferBlocks })) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RingUsageError(`lane ${name} must be a non-negative integer, got ${value}`);
      }
    }
    if (blockSize === 0) throw new RingUsageError('lane blockSize must be positive');
    const masks = new Uint8Array(LANE_OPCODES.length * LANE_MASK_STRIDE);
    LANE_OPCODES.forEach((opcode, index) => {
      const mask = config.opcodes.get(opcode);
      if (mask === undefined) return;
      if (mask.length > LANE_MASK_STRIDE)
        throw new RingUsageError(`lane mask of 0x${opcode.toString(16)} is too long`);
      masks.set(mask, index * LANE_MASK_STRIDE);
      masks[index * LANE_MASK_STRIDE] = 1; // byte 0 (the opcode) marks the row as served
    });
    this.#engine.configureLane(fd, blockSize, blockCount, maxTransferBlocks, masks);
    this.#configured = true;
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
