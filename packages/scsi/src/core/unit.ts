import { ModePageStore } from '../mode/pages.js';
import { FormatState } from '../sbc/format.js';
import { RangeLocks } from '../sbc/locks.js';
import { SanitizeState } from '../sbc/sanitize.js';
import { type SenseReason, SenseReasons } from '../sense/reasons.js';
import type { BlockBackend } from './backend.js';
import type { CommandRequest, CommandResult, LogicalUnitState, UnitLogger, UnitConfig } from './command.js';
import { dispatch, internalFailure } from './dispatch.js';
import type { AnyOpcodeEntry, OpcodeTable } from '../opcodes/table.js';
import { defaultOpcodeTable } from '../opcodes/index.js';

/** A step in the command chain: answer the request itself, or pass it on with `next`. */
export type UnitMiddleware = (
  request: CommandRequest,
  next: (request: CommandRequest) => Promise<CommandResult>,
) => CommandResult | Promise<CommandResult>;

export interface LogicalUnitOptions {
  readonly backend: BlockBackend;
  readonly config?: Partial<UnitConfig>;
  readonly logger?: UnitLogger;
  /** Commands this unit executes (default: every built-in command). Copied; `override` changes only this unit. */
  readonly table?: OpcodeTable;
  /** Caching mode page WCE at creation (default true). */
  readonly writeCacheEnabled?: boolean;
  /** Control mode page D_SENSE at creation (default false). */
  readonly descriptorSense?: boolean;
  /** Refuse writes with DATA PROTECT even if the backend could write. */
  readonly readOnly?: boolean;
  /** LUNs REPORT LUNS lists (default [0]); for users without the kernel, which answers REPORT LUNS itself. */
  readonly luns?: readonly number[];
  /**
   * Report POWER ON, RESET, OR BUS DEVICE RESET OCCURRED once to every I_T
   * nexus (SAM-5 5.14; default true). A transport whose kernel already reports
   * it (LIO does for TCMU devices) turns it off.
   */
  readonly powerOnUnitAttention?: boolean;
}

const silentLogger: UnitLogger = { debug() {}, warn() {}, error() {} };

let unitCounter = 0;

/** A serial number unique within the process and very likely across processes. */
function generateSerial(): string {
  unitCounter = (unitCounter + 1) & 0xffff;
  const random = Math.floor(Math.random() * 0x1_0000_0000);
  const time = Date.now() & 0xffff_ffff;
  return (
    (time >>> 0).toString(16).padStart(8, '0') +
    random.toString(16).padStart(8, '0') +
    unitCounter.toString(16).padStart(4, '0')
  );
}

/** FNV-1a over a string with a seed: 32 bits. */
function fnv1a(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * NAA IEEE Registered Extended (type 6) designator derived from the serial:
 * NAA 6, the OUI LIO uses (00:14:05), then 100 bits hashed from the serial, so
 * every unit with its own serial gets its own identifier (SPC-5 7.7.6.6.4).
 */
export function naaFromSerial(serial: string): Uint8Array {
  const oui = 0x001405;
  const b = new Uint8Array(16);
  b[0] = 0x60 | ((oui >>> 20) & 0x0f);
  b[1] = (oui >>> 12) & 0xff;
  b[2] = (oui >>> 4) & 0xff;
  b[3] = (oui & 0x0f) << 4;
  const words = [fnv1a(serial, 1), fnv1a(serial, 2), fnv1a(serial, 3), fnv1a(serial, 4)];
  b[3] |= words[0]! & 0x0f;
  for (let i = 0; i < 12; i++) b[4 + i] = (words[1 + (i >> 2)]! >>> ((3 - (i & 3)) * 8)) & 0xff;
  return b;
}

/**
 * SPC-5 7.7.6.6: an NAA designator is 8 bytes for NAA 2, 3 and 5 and 16 bytes
 * for NAA 6; anything else would make VPD 0x83 (and EXTENDED COPY targets) malformed.
 */
function checkNaa(naa: Uint8Array): void {
  const kind = (naa[0] ?? 0) >>> 4;
  const expected = kind === 6 ? 16 : kind === 2 || kind === 3 || kind === 5 ? 8 : undefined;
  if (expected === undefined || naa.length !== expected) {
    throw new RangeError(
      `config.naa must be an NAA 2/3/5 (8 bytes) or NAA 6 (16 bytes) designator, got NAA ${kind} in ${naa.length} bytes`,
    );
  }
}

export function defaultUnitConfig(backend: BlockBackend, overrides: Partial<UnitConfig> = {}): UnitConfig {
  const blockSize = backend.blockSize;
  const serial = overrides.serial ?? generateSerial();
  if (overrides.naa !== undefined) checkNaa(overrides.naa);
  const maxTransferBlocks = overrides.maxTransferBlocks ?? Math.max(1, Math.floor((8 << 20) / blockSize));
  // Limits that may not exceed MAXIMUM TRANSFER LENGTH default to at most it.
  const upToMaxTransfer = (blocks: number) =>
    maxTransferBlocks > 0 ? Math.min(blocks, maxTransferBlocks) : blocks;
  const config: UnitConfig = {
    vendor: 'TCMU',
    product: 'node-tcmu disk',
    revision: '0001',
    maxTransferBlocks,
    optimalTransferBlocks: upToMaxTransfer(Math.max(1, Math.floor((1 << 20) / blockSize))),
    maxCompareAndWriteBlocks: upToMaxTransfer(16),
    maxPrefetchBlocks: maxTransferBlocks,
    maxWriteSameBlocks: Math.max(1, Math.floor((64 << 20) / blockSize)),
    // 1 Mi blocks: one UNMAP stays well inside an initiator's command timeout.
    maxUnmapBlocks: 0x10_0000,
    maxUnmapDescriptors: 256,
    unmapGranularity: 1,
    maxAtomicTransferBlocks: 0,
    atomicAlignment: 0,
    atomicTransferLengthGranularity: 0,
    maxAtomicTransferBlocksWithBoundary: 0,
    maxAtomicBoundaryBlocks: 0,
    rotationRate: 1,
    extendedCopy: false,
    ...overrides,
    serial,
    naa: overrides.naa ?? naaFromSerial(serial),
  };
  checkBlockLimits(config);
  return config;
}

const U32 = 0xffff_ffff;

/**
 * The Block Limits VPD fields (SBC-4 6.6.4) must fit their fields and agree with each
 * other: what is advertised is what is enforced, and initiators (Linux sd) ignore or
 * reject limits that contradict MAXIMUM TRANSFER LENGTH.
 */
function checkBlockLimits(config: UnitConfig): void {
  const fail = (message: string): never => {
    throw new RangeError(`config: ${message}`);
  };
  const inRange = (name: keyof UnitConfig, min: number, max: number) => {
    const value = config[name] as number;
    if (!Number.isInteger(value) || value < min || value > max)
      fail(`${name} must be an integer in ${min}..${max}, got ${value}`);
  };
  inRange('maxTransferBlocks', 0, U32);
  inRange('optimalTransferBlocks', 0, U32);
  inRange('maxCompareAndWriteBlocks', 0, 0xff);
  inRange('maxPrefetchBlocks', 0, U32);
  inRange('maxWriteSameBlocks', 1, Number.MAX_SAFE_INTEGER);
  inRange('maxUnmapBlocks', 1, U32);
  inRange('maxUnmapDescriptors', 1, U32);
  inRange('unmapGranularity', 1, U32);
  inRange('maxAtomicTransferBlocks', 0, U32);
  inRange('atomicAlignment', 0, U32);
  inRange('atomicTransferLengthGranularity', 0, U32);
  inRange('maxAtomicTransferBlocksWithBoundary', 0, U32);
  inRange('maxAtomicBoundaryBlocks', 0, U32);
  const max = config.maxTransferBlocks;
  if (max > 0) {
    for (const name of [
      'optimalTransferBlocks',
      'maxCompareAndWriteBlocks',
      'maxPrefetchBlocks',
      'maxAtomicTransferBlocks',
      'maxAtomicTransferBlocksWithBoundary',
    ] as const) {
      if (config[name] > max) fail(`${name} (${config[name]}) exceeds maxTransferBlocks (${max})`);
    }
  }
  // An atomic boundary needs both a boundary size and a length limit for writes that use one.
  if ((config.maxAtomicBoundaryBlocks === 0) !== (config.maxAtomicTransferBlocksWithBoundary === 0)) {
    fail('maxAtomicBoundaryBlocks and maxAtomicTransferBlocksWithBoundary are both 0 or both set');
  }
  if (config.maxAtomicBoundaryBlocks > config.maxAtomicTransferBlocksWithBoundary) {
    fail('maxAtomicBoundaryBlocks exceeds maxAtomicTransferBlocksWithBoundary');
  }
  const granularity = config.atomicTransferLengthGranularity;
  if (granularity > 0) {
    for (const name of ['maxAtomicTransferBlocks', 'maxAtomicTransferBlocksWithBoundary'] as const) {
      if (config[name] % granularity !== 0)
        fail(`${name} is not a multiple of atomicTransferLengthGranularity`);
    }
  }
}

/** Per-I_T-nexus unit attention queue (SAM-5 5.14). */
type AttentionQueue = SenseReason[];

/**
 * A logical unit: the backend, its configuration and the state SCSI commands
 * change (mode pages, range locks, format, sanitize, unit attentions, start/stop).
 */
export class LogicalUnit implements LogicalUnitState {
  readonly backend: BlockBackend;
  readonly config: UnitConfig;
  readonly readOnly: boolean;
  readonly modes: ModePageStore;
  readonly locks: RangeLocks;
  readonly format: FormatState;
  readonly sanitize: SanitizeState;
  readonly logger: UnitLogger;
  readonly table: OpcodeTable;
  readonly luns: readonly number[];

  readonly #preventingNexuses = new Set<string>();
  readonly #attention = new Map<string, AttentionQueue>();
  #lastNexus = '';
  #lastQueue: AttentionQueue | undefined;
  readonly #powerOnAttention: boolean;
  readonly #middleware: UnitMiddleware[] = [];
  #chain: ((request: CommandRequest) => Promise<CommandResult>) | undefined;
  #stopped = false;
  readonly #listeners = new Set<() => void>();
  readonly #changed = (): void => {
    for (const listener of this.#listeners) listener();
  };

  constructor(options: LogicalUnitOptions) {
    this.backend = options.backend;
    this.config = defaultUnitConfig(options.backend, options.config);
    this.readOnly = Boolean(options.readOnly || options.backend.readOnly);
    this.logger = options.logger ?? silentLogger;
    this.modes = new ModePageStore(
      {
        writeCacheEnabled: options.writeCacheEnabled ?? true,
        descriptorSense: options.descriptorSense ?? false,
        readOnly: this.readOnly,
      },
      this.#changed,
    );
    this.locks = new RangeLocks(this.#changed);
    this.format = new FormatState(this.#changed);
    this.sanitize = new SanitizeState(this.#changed);
    this.table = (options.table ?? defaultOpcodeTable()).clone();
    this.luns = options.luns ?? [0];
    for (const lun of this.luns) {
      // SAM-5 4.7: single level LUNs up to the flat space's 14 bits.
      if (!Number.isInteger(lun) || lun < 0 || lun > 0x3fff)
        throw new RangeError(`LUN ${lun} is not in 0..16383`);
    }
    this.#powerOnAttention = options.powerOnUnitAttention ?? true;
  }

  /**
   * Execute one command. Synchronous when the backend is: the result comes
   * back directly, and a promise only when something waits (await it either
   * way). Never throws or rejects: every failure is a SCSI status.
   */
  execute(request: CommandRequest): CommandResult | Promise<CommandResult> {
    if (this.#chain) return this.#chain(request);
    return dispatch(this, request);
  }

  /** START STOP UNIT with START=0 stopped the unit (SBC-4 4.20). */
  get stopped(): boolean {
    return this.#stopped;
  }
  set stopped(stopped: boolean) {
    if (stopped === this.#stopped) return;
    this.#stopped = stopped;
    this.#changed();
  }

  /**
   * Whether plain READ and WRITE (6/10/12/16) from `nexus` may be answered
   * without the emulation right now, by a transport's own fast path that
   * answers GOOD exactly when the emulation would (see plainIoProfile and
   * docs/backends.md). Not while anything a plain command must see is
   * pending: a unit attention, middleware, a stopped unit, a FORMAT, a running
   * or failed SANITIZE, an exclusive range lock (COMPARE AND WRITE); and no
   * writes on a read-only unit or with the write cache off (every write is
   * then FUA).
   */
  plainIo(nexus: string): { readonly reads: boolean; readonly writes: boolean } {
    // An unknown nexus is not plain: its first command must reach the emulation
    // so the nexus is known and later unit attentions are queued for it
    // (raiseUnitAttention, like LIO's core_scsi3_ua_allocate per session).
    const queue = this.#attention.get(nexus);
    const reads =
      queue !== undefined &&
      queue.length === 0 &&
      this.#chain === undefined &&
      !this.#stopped &&
      !this.format.active &&
      !this.format.corrupted &&
      !this.sanitize.active &&
      !this.sanitize.failed &&
      !this.locks.exclusiveActive;
    return { reads, writes: reads && !this.readOnly && this.modes.writeCacheEnabled };
  }

  /**
   * Calls `listener` after every change that may change `plainIo()` (unit
   * attentions, middleware, table overrides, START STOP, FORMAT, SANITIZE, mode
   * pages, exclusive locks, capacity). Returns the unsubscribe function.
   */
  onStateChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Add a middleware in front of the built-in command handling (first added runs first). */
  use(middleware: UnitMiddleware): this {
    this.#middleware.push(middleware);
    let next = (request: CommandRequest): Promise<CommandResult> => {
      const result = dispatch(this, request);
      return result instanceof Promise ? result : Promise.resolve(result);
    };
    for (let i = this.#middleware.length - 1; i >= 0; i--) {
      const step = this.#middleware[i]!;
      const inner = next;
      next = (request) => {
        try {
          return Promise.resolve(step(request, inner)).catch((error: unknown) =>
            internalFailure(this, request, error),
          );
        } catch (error) {
          return Promise.resolve(internalFailure(this, request, error));
        }
      };
    }
    this.#chain = next;
    this.#changed();
    return this;
  }

  /**
   * Add a command or replace a built-in one for this unit; it is dispatched,
   * validated against its usage mask and listed by REPORT SUPPORTED OPERATION CODES.
   */
  override(entry: AnyOpcodeEntry): this {
    this.table.set(entry);
    this.#changed();
    return this;
  }

  /** Queue a unit attention for every known I_T nexus except `except` (SPC-5: the one that caused it). */
  raiseUnitAttention(
    reason: 'CAPACITY_DATA_HAS_CHANGED' | 'MODE_PARAMETERS_CHANGED' | 'INQUIRY_DATA_HAS_CHANGED',
    except?: string,
  ): void {
    const sense = SenseReasons[reason];
    for (const [nexus, queue] of this.#attention) {
      if (nexus === except || queue.includes(sense)) continue;
      queue.push(sense);
    }
    this.#changed();
  }

  /** Tell every I_T nexus the capacity changed (after the backend was resized). */
  capacityChanged(): void {
    this.raiseUnitAttention('CAPACITY_DATA_HAS_CHANGED');
  }

  #queueOf(nexus: string): AttentionQueue {
    // Commands come in runs from one nexus: skip the map lookup (queues are never replaced).
    if (nexus === this.#lastNexus && this.#lastQueue !== undefined) return this.#lastQueue;
    let queue = this.#attention.get(nexus);
    if (!queue) {
      queue = this.#powerOnAttention ? [SenseReasons.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED] : [];
      this.#attention.set(nexus, queue);
      this.#changed();
    }
    this.#lastNexus = nexus;
    this.#lastQueue = queue;
    return queue;
  }

  /** Remove and return the oldest unit attention pending for `nexus`. */
  takeUnitAttention(nexus: string): SenseReason | undefined {
    const queue = this.#queueOf(nexus);
    if (queue.length === 0) return undefined;
    const reason = queue.shift();
    if (queue.length === 0) this.#changed();
    return reason;
  }

  /** PREVENT ALLOW MEDIUM REMOVAL state per I_T nexus (SPC-5 6.14 / SBC-4 5.13). */
  setMediumRemovalPrevented(nexus: string, prevent: boolean): void {
    if (prevent) this.#preventingNexuses.add(nexus);
    else this.#preventingNexuses.delete(nexus);
  }

  get mediumRemovalPrevented(): boolean {
    return this.#preventingNexuses.size > 0;
  }
}
