import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { type LogicalUnit, SenseReasons, senseFor } from '@tcmu/scsi';
import { CommandAbortedError, type RingCommand, type TcmuRing, type TmrNotice } from '@tcmu/ring';
import { carriesDataIn, type Direction, IncomingCommand } from './command.js';
import {
  DeviceClosedError,
  DeviceError,
  DeviceSetupError,
  HandlerError,
  type SetupStep,
  TeardownError,
} from './errors.js';
import { composeHandler, type DeviceLogger, type Handler, type HandlerResult } from './handler.js';
import type { DeviceIdentity } from './identity.js';
import { type DeviceStats, MetricsCollector } from './metrics.js';
import type {
  BackstoreRef,
  DevicePlatform,
  DiskRef,
  LunRef,
  NodeRef,
  TargetRef,
  UioRef,
} from './platform.js';
import type { ResolvedOptions } from './options.js';

/** What the 'command' event reports for every completed command. */
export interface CommandEvent {
  readonly id: number;
  readonly cdb: Uint8Array;
  readonly opcode: number;
  readonly status: number;
  readonly sense: Uint8Array | undefined;
  readonly dataInBytes: number;
  readonly dataOutBytes: number;
  readonly latencyMs: number;
}

export interface DeviceEvents {
  /** Every step done: the disk exists and commands flow. */
  ready: [];
  /** A failure that did not belong to one command (corrupt ring, handler bug...). */
  error: [error: Error];
  /** A command completed (emitted only while someone listens). */
  command: [event: CommandEvent];
  /** close() finished. */
  close: [];
}

export interface CloseOptions {
  /**
   * How long close() lets commands in flight finish (default 5000 ms).
   * Leftovers are completed with TASK ABORTED.
   */
  readonly drainTimeoutMs?: number;
}

export type DeviceState = 'new' | 'opening' | 'ready' | 'closing' | 'closed' | 'failed';

const STATUS_GOOD = 0x00;
const STATUS_CHECK_CONDITION = 0x02;
const STATUS_TASK_ABORTED = 0x40;
const MAX_SENSE = 96;
const DEFAULT_DRAIN_TIMEOUT_MS = 5000;
const ROLLBACK_DRAIN_TIMEOUT_MS = 2000;

/** The pieces of the default handler the device needs (see scsi.ts). */
export interface Emulation {
  readonly handler: Handler;
  directionOf(cdb: Uint8Array): Direction;
  /** The emulated logical unit (absent with a custom handler and no backend). */
  readonly unit?: LogicalUnit | undefined;
}

/** @internal a Target the device joins as one more LUN */
export interface Attachment {
  readonly target: TargetRef;
  readonly lun: number | undefined;
}

/**
 * A block device served from this process: a TCMU backstore, its ring, the
 * fabric LUN(s) and the device node. Create it with openDevice().
 */
export class Device extends EventEmitter<DeviceEvents> {
  readonly name: string;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly identity: DeviceIdentity;
  readonly queueDepth: number;
  /**
   * The emulated logical unit (when there is a backend): add commands with
   * `unit.override(entry)` or SCSI-level middleware with `unit.use()`.
   */
  readonly unit: LogicalUnit | undefined;
  readonly #attach: Attachment | undefined;
  readonly #platform: DevicePlatform;
  readonly #options: ResolvedOptions;
  readonly #logger: DeviceLogger;
  readonly #metrics: MetricsCollector;
  readonly #handler: Handler;
  readonly #directionOf: (cdb: Uint8Array) => Direction;
  readonly #inFlight = new Map<number, IncomingCommand>();
  /** Set once the drain deadline of close() passed: how long a late command may run. */
  #lateCommandBoundMs: number | undefined;
  #state: DeviceState = 'new';
  #ring: TcmuRing | undefined;
  #backstore: BackstoreRef | undefined;
  #uio: UioRef | undefined;
  #ownTargets: TargetRef[] = [];
  #luns: LunRef[] = [];
  #disk: DiskRef | undefined;
  #node: NodeRef | undefined;
  #opening: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #drainWaiters: Array<() => void> = [];
  #onRelease: (() => void) | undefined;

  /** @internal use openDevice() */
  constructor(options: ResolvedOptions, emulation: Emulation, platform: DevicePlatform, attach?: Attachment) {
    super();
    this.unit = emulation.unit;
    this.#attach = attach;
    this.name = options.name;
    this.blockSize = options.blockSize;
    this.blockCount = options.blockCount;
    this.identity = options.identity;
    this.queueDepth = options.queueDepth;
    this.#options = options;
    this.#platform = platform;
    this.#logger = options.logger;
    this.#metrics = new MetricsCollector();
    this.#handler = composeHandler(options.middleware, emulation.handler);
    this.#directionOf = emulation.directionOf;
  }

  get state(): DeviceState {
    return this.#state;
  }

  /** The SCSI disk, e.g. /dev/sda (loopback fabric only). */
  get diskPath(): string | undefined {
    return this.#disk?.devPath;
  }

  get disk(): DiskRef | undefined {
    return this.#disk;
  }

  /** The node made in nodeDir, e.g. /dev/tcmufile/vol0. */
  get nodePath(): string | undefined {
    return this.#node?.path;
  }

  /** The UIO device of the ring, e.g. /dev/uio0. */
  get uioPath(): string | undefined {
    return this.#uio?.path;
  }

  /** The backstore's configfs directory (for wiring other fabrics by hand). */
  get backstorePath(): string | undefined {
    return this.#backstore?.path;
  }

  get hba(): number | undefined {
    return this.#backstore?.hba;
  }

  /** The LUNs this device is exported as, one per fabric. */
  get luns(): readonly {
    readonly fabric: 'loopback' | 'iscsi';
    readonly wwn: string;
    readonly lun: number;
  }[] {
    return this.#luns.map((l) => ({ fabric: l.target.type, wwn: l.target.wwn, lun: l.lun }));
  }

  /** Counters, rates and latency percentiles since open. */
  stats(): DeviceStats {
    return this.#metrics.snapshot();
  }

  /** The live collector (e.g. for its latency histogram buckets). */
  get metrics(): MetricsCollector {
    return this.#metrics;
  }

  /**
   * Runs every setup step in order; on failure undoes what was done and
   * throws DeviceSetupError naming the step.
   * Emits 'ready' at the end. openDevice() calls it; call it yourself on a
   * device from createDevice() to subscribe to events first.
   */
  open(): Promise<void> {
    if (this.#state !== 'new')
      return Promise.reject(new DeviceError(`device '${this.name}' was already opened`));
    this.#state = 'opening';
    this.#opening = this.#open();
    return this.#opening;
  }

  async #open(): Promise<void> {
    const attach = this.#attach;
    const platform = this.#platform;
    const options = this.#options;
    let step: SetupStep = 'backstore';
    try {
      this.#backstore = await platform.createBackstore({
        name: options.name,
        hba: options.hba,
        sizeBytes: options.blockCount * options.blockSize,
        blockSize: options.blockSize,
        serial: options.identity.serial,
        hwMaxSectors: options.hwMaxSectors,
        maxDataAreaMb: options.maxDataAreaMb,
      });
      step = 'uio';
      this.#uio = await platform.findUio(this.#backstore);
      step = 'ring';
      const ring = platform.openRing(this.#uio, { maxInFlight: options.queueDepth });
      this.#ring = ring;
      ring.on('error', (error) => this.#onRingError(error));
      ring.on('command', (command) => this.#onCommand(command));
      ring.on('tmr', (notice) => this.#onTmr(notice));
      step = 'queue-depth';
      const depth = await platform.setQueueDepth(this.#backstore, options.queueDepth);
      if (depth !== undefined && depth < options.queueDepth) {
        this.#logger.debug(
          { device: this.name, requested: options.queueDepth, kernel: depth },
          'kernel queue depth',
        );
      }
      step = 'target';
      const targets: { target: TargetRef; lun: number | undefined }[] = [];
      if (attach) targets.push(attach);
      for (const spec of options.targets) {
        const target = await platform.createTarget(spec);
        this.#ownTargets.push(target);
        targets.push({ target, lun: options.lun });
      }
      step = 'lun';
      for (const { target, lun } of targets) {
        const number = lun ?? (await lowestFreeLun(platform, target));
        this.#luns.push(await platform.createLun(target, this.#backstore, number));
      }
      const loopback = this.#luns.find((l) => l.target.type === 'loopback');
      if (loopback) {
        step = 'disk';
        this.#disk = await platform.waitForDisk(loopback);
        if (options.nodeDir !== undefined) {
          step = 'node';
          this.#node = await platform.makeNode(
            join(options.nodeDir, options.name),
            this.#disk,
            options.nodeKind,
          );
        }
      }
    } catch (cause) {
      this.#state = 'failed';
      // Commands keep being served during the rollback (removing a LUN makes the kernel flush the disk).
      const rollbackErrors = await this.#teardown(ROLLBACK_DRAIN_TIMEOUT_MS);
      throw new DeviceSetupError(step, cause, rollbackErrors);
    }
    this.#state = 'ready';
    this.#logger.info(
      { device: this.name, disk: this.diskPath, node: this.nodePath, uio: this.uioPath, luns: this.luns },
      'device ready',
    );
    this.emit('ready');
  }

  /**
   * Detaches the device and removes everything open() made: the LUN(s)
   * first (the kernel flushes the disk through us and waits for commands in
   * flight, which keep being served), then waits for the rest up to
   * drainTimeoutMs and completes leftovers with TASK ABORTED, then closes the
   * ring and removes the targets it created, the backstore, the HBA
   * directory and the node. Idempotent; concurrent calls share one close.
   * @throws TeardownError when some object could not be removed
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closing) return this.#closing;
    if (this.#state === 'new' || this.#state === 'failed' || this.#state === 'closed') {
      this.#state = 'closed';
      this.#closing = Promise.resolve();
      return this.#closing;
    }
    if (this.#state === 'opening') {
      // e.g. SIGTERM during setup: let open() finish (or roll back), then close.
      const opening = this.#opening ?? Promise.resolve();
      this.#closing = opening.then(
        () => {
          this.#closing = undefined;
          return this.close(options);
        },
        () => undefined,
      );
      return this.#closing;
    }
    this.#state = 'closing';
    const drainTimeoutMs = options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
    this.#closing = this.#teardown(drainTimeoutMs).then((errors) => {
      this.#state = 'closed';
      this.#onRelease?.();
      this.emit('close');
      if (errors.length > 0) throw new TeardownError(errors);
    });
    return this.#closing;
  }

  /** @internal a Target learns when its device is gone */
  set onRelease(callback: () => void) {
    this.#onRelease = callback;
  }

  /** Reverse order of open(); collects failures instead of stopping at the first. */
  async #teardown(drainTimeoutMs: number): Promise<unknown[]> {
    const errors: unknown[] = [];
    const attempt = async (what: string, action: () => Promise<unknown>): Promise<void> => {
      try {
        await action();
      } catch (error) {
        this.#logger.warn({ device: this.name, step: what, err: error }, 'teardown step failed');
        errors.push(error);
      }
    };
    // The drain deadline runs while the LUNs go away: a hung handler would
    // otherwise keep the kernel's LUN removal waiting forever.
    const deadline = setTimeout(() => this.#abortInFlight(drainTimeoutMs), drainTimeoutMs);
    try {
      if (this.#node) {
        const node = this.#node;
        await attempt('node', () => this.#platform.removeNode(node));
        this.#node = undefined;
      }
      for (const lun of this.#luns.splice(0).reverse()) {
        await attempt(`lun ${lun.lun}`, () => this.#platform.removeLun(lun));
      }
      this.#disk = undefined;
      await this.#drained();
    } finally {
      clearTimeout(deadline);
    }
    for (const target of this.#ownTargets.splice(0).reverse()) {
      await attempt(`target ${target.wwn}`, () => this.#platform.removeTarget(target));
    }
    if (this.#ring) {
      const ring = this.#ring;
      this.#ring = undefined;
      await attempt('ring', () => ring.close({ drainTimeoutMs: 0 }));
    }
    if (this.#backstore) {
      const backstore = this.#backstore;
      this.#backstore = undefined;
      await attempt('backstore', () => this.#platform.removeBackstore(backstore));
    }
    this.#uio = undefined;
    return errors;
  }

  #drained(): Promise<void> {
    if (this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Drain deadline: abort the handlers still running and answer TASK ABORTED
   * for them. Commands that arrive later (sd flushing the disk while the LUN
   * goes away, midlayer retries) still run, each bounded by the same timeout:
   * refusing them with BUSY would make the kernel retry them for minutes.
   */
  #abortInFlight(boundMs: number): void {
    this.#lateCommandBoundMs = boundMs;
    if (this.#inFlight.size === 0) return;
    this.#logger.warn(
      { device: this.name, inFlight: this.#inFlight.size },
      'drain timeout: aborting commands',
    );
    for (const command of [...this.#inFlight.values()]) this.#abortCommand(command);
  }

  #abortCommand(command: IncomingCommand): void {
    command.abort(new DeviceClosedError(`device '${this.name}' closed before the command completed`));
    this.#complete(command, { status: STATUS_TASK_ABORTED });
  }

  // ---------------------------------------------------------------- data path

  #onCommand(ring: RingCommand): void {
    const command = new IncomingCommand(ring, this.#directionOf(ring.cdb), this.name, this.#options.nexus);
    this.#metrics.started();
    this.#inFlight.set(command.id, command);
    if (this.#lateCommandBoundMs !== undefined) {
      command.deadline = setTimeout(() => this.#abortCommand(command), this.#lateCommandBoundMs);
    }
    let pending: HandlerResult | Promise<HandlerResult>;
    try {
      pending = this.#handler(command);
    } catch (error) {
      this.#handlerFailed(command, error);
      return;
    }
    if (isPromiseLike(pending)) {
      pending.then(
        (result) => this.#complete(command, result),
        (error: unknown) => this.#handlerFailed(command, error),
      );
    } else {
      this.#complete(command, pending);
    }
  }

  #handlerFailed(command: IncomingCommand, error: unknown): void {
    if (!this.#inFlight.has(command.id) || this.#inFlight.get(command.id) !== command) return;
    this.#logger.error({ device: this.name, id: command.id, err: error }, 'handler failed');
    this.#emitError(
      new HandlerError(`handler failed on command ${command.id} (opcode 0x${hex2(command.opcode)})`, {
        cause: error,
      }),
    );
    this.#complete(command, { status: STATUS_CHECK_CONDITION, sense: this.#internalFailureSense() });
  }

  #complete(command: IncomingCommand, result: HandlerResult): void {
    if (this.#inFlight.get(command.id) !== command) return; // already answered (drain deadline)
    if (command.deadline) clearTimeout(command.deadline);
    const ring = this.#ring;
    let answer = result;
    if (!isHandlerResult(result)) {
      this.#logger.error({ device: this.name, id: command.id }, 'handler returned no valid result');
      this.#emitError(new HandlerError(`handler returned no valid result for command ${command.id}`));
      answer = { status: STATUS_CHECK_CONDITION, sense: this.#internalFailureSense() };
    }
    const capacity = command.dataInLength;
    let dataIn = answer.dataIn;
    if (dataIn && dataIn.length > capacity) dataIn = dataIn.subarray(0, capacity);
    let sense = answer.sense;
    if (sense && sense.length > MAX_SENSE) sense = sense.subarray(0, MAX_SENSE);
    const dataInBytes = dataIn?.length ?? 0;
    this.#inFlight.delete(command.id);
    if (ring && !ring.closed) {
      try {
        const completion: { status: number; sense?: Uint8Array; dataIn?: Uint8Array; readLen?: number } = {
          status: answer.status,
        };
        if (sense && sense.length > 0) completion.sense = sense;
        if (dataIn && dataIn.length > 0) completion.dataIn = dataIn;
        // Declare Data-In (even none) for Data-In commands, so nothing stale reaches the initiator.
        if (capacity > 0 && carriesDataIn(command.direction) && command.direction !== 'unknown') {
          completion.readLen = dataInBytes;
        }
        ring.complete(command.ring, completion);
      } catch (error) {
        this.#emitError(error as Error);
      }
    }
    // One clock read at completion serves the latency and the metrics' rate buckets.
    const endedAt = performance.now();
    const latencyMs = endedAt - command.receivedAt;
    const dataOutBytes = command.dataOutLength;
    const cdb = command.cdb;
    this.#metrics.finished({
      opcode: command.opcode,
      ...(command.opcode === 0x7f && cdb.length >= 10 ? { serviceAction: (cdb[8]! << 8) | cdb[9]! } : {}),
      status: answer.status,
      dataInBytes,
      dataOutBytes,
      latencyMs,
      endedAt,
    });
    if (this.listenerCount('command') > 0) {
      this.emit('command', {
        id: command.id,
        cdb,
        opcode: command.opcode,
        status: answer.status,
        sense,
        dataInBytes,
        dataOutBytes: answer.status === STATUS_GOOD ? dataOutBytes : 0,
        latencyMs,
      });
    }
    if (this.#inFlight.size === 0 && this.#drainWaiters.length > 0) {
      for (const wake of this.#drainWaiters.splice(0)) wake();
    }
  }

  /** The kernel aborted commands (ABORT TASK, LUN RESET...): abort their handlers' signals. */
  #onTmr(notice: TmrNotice): void {
    for (const id of notice.commandIds) {
      this.#inFlight.get(id)?.abort(new CommandAbortedError(id, notice.type));
    }
  }

  /** HARDWARE ERROR / INTERNAL TARGET FAILURE (44 00): what a handler bug reports, in the unit's sense format. */
  #internalFailureSense(): Uint8Array {
    return senseFor(SenseReasons.INTERNAL_TARGET_FAILURE, {}, this.unit?.modes.descriptorSense ?? false);
  }

  #onRingError(error: Error): void {
    this.#logger.error({ device: this.name, err: error }, 'ring failed');
    this.#emitError(error);
  }

  /** 'error' without listeners would throw from inside the data path: log only then. */
  #emitError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }
}

async function lowestFreeLun(platform: DevicePlatform, target: TargetRef): Promise<number> {
  const used = new Set(await platform.usedLuns(target));
  let lun = 0;
  while (used.has(lun)) lun++;
  return lun;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

const isPromiseLike = (value: unknown): value is Promise<HandlerResult> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

const isHandlerResult = (value: unknown): value is HandlerResult => {
  if (typeof value !== 'object' || value === null) return false;
  const { status, sense, dataIn } = value as HandlerResult;
  return (
    Number.isInteger(status) &&
    status >= 0 &&
    status <= 0xff &&
    (sense === undefined || sense instanceof Uint8Array) &&
    (dataIn === undefined || dataIn instanceof Uint8Array)
  );
};
