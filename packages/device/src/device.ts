import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import {
  type CommandResult,
  type DataDirection,
  isPromise,
  type LogicalUnit,
  type PlainIoProfile,
  plainIoProfile,
  SenseReasons,
  senseFor,
} from '@tcmu/scsi';
import {
  CorruptRingError,
  LANE_OPCODES,
  type LaneCounters,
  type RingCommand,
  type TcmuRing,
} from '@tcmu/ring';
import {
  DeviceClosedError,
  DeviceError,
  DeviceResizeError,
  DeviceSetupError,
  HandlerError,
  ReattachMismatchError,
  type SetupStep,
  TeardownError,
} from './errors.js';
import type { DeviceLogger, Handler, HandlerResult } from './handler.js';
import type { DeviceIdentity } from './identity.js';
import { type DeviceStats, MetricsCollector } from './metrics.js';
import type {
  PlatformBackstore,
  DevicePlatform,
  DiskRef,
  FoundBackstore,
  LunRef,
  NodeRef,
  TargetRef,
  UioRef,
} from './platform.js';
import type { ResolvedOptions } from './options.js';

/**
 * Backstores a device of this process detached: our own marker is on them, yet a
 * device opened later in this process may adopt them (an in-process restart).
 */
const detachedHere = new Set<string>();

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
  /** Serving again after `cause` (a corrupt ring) stopped intake: the ring was reset. */
  recovered: [cause: Error];
  /** resize() changed the capacity. */
  resized: [blockCount: number, previous: number];
}

export interface DeviceResizeOptions {
  /**
   * Allow a shrink. Without it any shrink is refused: the device cannot know which blocks a
   * filesystem uses. Whether the cut-off data stays is the backend's (FileBackend keeps it).
   */
  readonly force?: boolean;
}

export interface DeviceCloseOptions {
  /**
   * How long close() lets commands in flight finish (default 5000 ms).
   * Leftovers are completed with TASK ABORTED.
   */
  readonly drainTimeoutMs?: number;
}

export type DeviceState = 'new' | 'opening' | 'ready' | 'recovering' | 'closing' | 'closed' | 'failed';

const STATUS_GOOD = 0x00;
const STATUS_CHECK_CONDITION = 0x02;
const STATUS_TASK_ABORTED = 0x40;
const DEFAULT_DRAIN_TIMEOUT_MS = 5000;
const ROLLBACK_DRAIN_TIMEOUT_MS = 2000;
const RECOVERY_DRAIN_TIMEOUT_MS = 5000;

/** How the device answers commands (see scsi.ts). */
export interface Emulation {
  /** The emulated logical unit (absent with a custom handler and no backend). */
  readonly unit?: LogicalUnit | undefined;
  /**
   * The handler chain (a custom handler, or middleware around the unit);
   * undefined when commands go straight to `unit.execute()`.
   */
  readonly handler?: Handler | undefined;
  /** A custom handler's command direction, from the opcode table (its results do not carry one). */
  directionOf(cdb: Uint8Array): DataDirection | undefined;
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
  #blockCount: number;
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
  readonly #emulation: Emulation;
  /** The unit commands go to directly (no handler chain): the one-pass path. */
  readonly #direct: LogicalUnit | undefined;
  /** Set once the drain deadline of close() passed: how long a late command may run. */
  #lateCommandBoundMs: number | undefined;
  /** The ring commands complete on; kept after close, so late handlers still release what they hold. */
  #completions: TcmuRing | undefined;
  #laneProfile: PlainIoProfile | undefined;
  /** The table entries the lane profile was made from (an override changes what the lane may serve). */
  #laneEntries: readonly unknown[] = [];
  #unsubscribeUnit: (() => void) | undefined;
  /** performance.now() read once per batch of completions (cleared by a microtask). */
  #clock = 0;
  #clockFresh = false;
  readonly #staleClock = () => {
    this.#clockFresh = false;
  };
  readonly #onCommand = (command: RingCommand) => this.#serve(command);
  #state: DeviceState = 'new';
  #ring: TcmuRing | undefined;
  #backstore: PlatformBackstore | undefined;
  #uio: UioRef | undefined;
  #ownTargets: TargetRef[] = [];
  #luns: LunRef[] = [];
  #disk: DiskRef | undefined;
  #node: NodeRef | undefined;
  /** The earlier process's backstore this device took over (reattach). */
  #adopted: FoundBackstore | undefined;
  #recoveries = 0;
  #opening: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #drainWaiters: Array<() => void> = [];
  #onRelease: (() => void) | undefined;
  #resizing: Promise<void> | undefined;

  /** @internal use openDevice() */
  constructor(options: ResolvedOptions, emulation: Emulation, platform: DevicePlatform, attach?: Attachment) {
    super();
    this.unit = emulation.unit;
    this.#attach = attach;
    this.name = options.name;
    this.blockSize = options.blockSize;
    this.#blockCount = options.blockCount;
    this.identity = options.identity;
    this.queueDepth = options.queueDepth;
    this.#options = options;
    this.#platform = platform;
    this.#logger = options.logger;
    this.#metrics = new MetricsCollector();
    this.#emulation = emulation;
    this.#direct = emulation.handler === undefined ? emulation.unit : undefined;
    // Someone watching every command: the native lane would hide commands from them.
    const emitter = this as EventEmitter;
    emitter.on('newListener', (event: string | symbol) => {
      if (event === 'command') queueMicrotask(() => this.#updateLaneGate());
    });
    emitter.on('removeListener', (event: string | symbol) => {
      if (event === 'command') this.#updateLaneGate();
    });
  }

  get state(): DeviceState {
    return this.#state;
  }

  /** The capacity in blocks (changed by resize()). */
  get blockCount(): number {
    return this.#blockCount;
  }

  /**
   * Online resize to `blockCount` blocks: the backend (its `resize` capability), then the
   * kernel's record of the size, then READ CAPACITY answers the new size and every I_T nexus
   * gets CAPACITY DATA HAS CHANGED; a loopback disk is rescanned so /dev/sdX follows. A backend
   * whose size already is `blockCount` (it changed underneath) is left alone: the rest follows
   * it. Resizes run one at a time. Throws DeviceResizeError (a shrink without `force`, no resizable backend).
   */
  resize(blockCount: number, options: DeviceResizeOptions = {}): Promise<void> {
    const previous = this.#resizing ?? Promise.resolve();
    const run = previous.catch(() => {}).then(() => this.#resize(blockCount, options.force === true));
    this.#resizing = run;
    return run;
  }

  async #resize(blockCount: number, force: boolean): Promise<void> {
    const name = this.name;
    if (this.#state !== 'ready' || this.#backstore === undefined) {
      throw new DeviceResizeError(
        `device '${name}' is ${this.#state}: only a ready device can be resized`,
        'state',
      );
    }
    if (
      !Number.isSafeInteger(blockCount) ||
      blockCount < 1 ||
      !Number.isSafeInteger(blockCount * this.blockSize)
    ) {
      throw new DeviceResizeError(
        `cannot resize '${name}' to ${blockCount} blocks: not a positive whole number`,
        'invalid',
      );
    }
    const unit = this.unit;
    // A backend that already has the size changed underneath (an RBD image another client
    // resized): only the kernel's record and the initiators have to follow.
    const followed = unit !== undefined && unit.backend.blockCount === blockCount;
    const resizeBackend = followed ? () => {} : unit?.backend.resize?.bind(unit.backend);
    const resizeBackstore = this.#platform.resizeBackstore;
    if (unit === undefined || resizeBackend === undefined || resizeBackstore === undefined) {
      throw new DeviceResizeError(
        `device '${name}' cannot be resized: its backend has no resize()`,
        'unsupported',
      );
    }
    const current = this.#blockCount;
    if (blockCount === current) return;
    if (blockCount < current && !force) {
      throw new DeviceResizeError(
        `refusing to shrink '${name}' from ${current} to ${blockCount} blocks: data past the new end would be cut off (force: true to shrink anyway)`,
        'shrink',
      );
    }
    await resizeBackend(blockCount);
    try {
      await resizeBackstore.call(this.#platform, this.#backstore, blockCount * this.blockSize);
    } catch (error) {
      // The kernel keeps the old size: so does the backend (best effort; a shrink may have freed data).
      await Promise.resolve(resizeBackend(current)).catch(() => {});
      throw new DeviceResizeError(
        `the kernel refused the new size of '${name}': ${(error as Error).message}`,
        'kernel',
        {
          cause: error,
        },
      );
    }
    this.#blockCount = blockCount;
    unit.capacityChanged();
    this.#logger.info({ device: name, blockCount, previous: current }, 'device resized');
    this.emit('resized', blockCount, current);
    const disk = this.#disk;
    if (disk !== undefined && this.#platform.rescanDisk !== undefined) {
      // The initiator still learns from the unit attention; the rescan only spares it the wait.
      await this.#platform
        .rescanDisk(disk)
        .catch((error: unknown) =>
          this.#logger.warn({ device: name, err: error }, 'disk rescan after resize failed'),
        );
    }
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

  /** What the ring's native lane answered (undefined without the lane: `nativeLane` option). */
  get nativeLane(): LaneCounters | undefined {
    return this.#options.nativeLane ? this.#completions?.lane.counters() : undefined;
  }

  /** What the ring's lane on the JS thread answered (undefined without it: `jsLane` option). */
  get jsLane(): LaneCounters | undefined {
    return this.#options.jsLane ? this.#completions?.lane.counters() : undefined;
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
      const note = {
        ...(options.source === undefined ? {} : { source: options.source }),
        ...(options.nodeDir === undefined ? {} : { node: join(options.nodeDir, options.name) }),
      };
      const found = options.reattach && !attach ? await platform.findBackstore?.(options.name) : undefined;
      const released = found?.ownedByUs === true && detachedHere.has(found.ref.path);
      if (found?.ours && (!found.ownerAlive || released) && platform.adoptBackstore) {
        this.#checkIdentity(found);
        detachedHere.delete(found.ref.path);
        this.#backstore = await platform.adoptBackstore(found, note);
        this.#adopted = found;
      } else {
        // Also when another process lives or the name is someone else's: creation says so.
        this.#backstore = await platform.createBackstore({
          name: options.name,
          hba: options.hba,
          sizeBytes: options.blockCount * options.blockSize,
          blockSize: options.blockSize,
          serial: options.identity.serial,
          hwMaxSectors: options.hwMaxSectors,
          maxDataAreaMb: options.maxDataAreaMb,
          commandTimeoutS: options.commandTimeoutS,
          note,
        });
      }
      step = 'uio';
      this.#uio = await platform.findUio(this.#backstore);
      step = 'ring';
      const backstore = this.#backstore;
      const ring = platform.openRing(this.#uio, {
        maxInFlight: options.queueDepth,
        device: options.name,
        nexus: options.nexus,
        freeKeptBuffer: (id) => platform.freeKeptBuffer(backstore, id),
      });
      this.#ring = ring;
      this.#completions = ring;
      ring.on('error', (error) => this.#onRingError(error));
      ring.on('command', this.#onCommand);
      if (options.nativeLane || options.jsLane) this.#startLane(ring);
      const adopted = this.#adopted;
      if (adopted) {
        // The ring is mapped and served: let the kernel queue commands again.
        await platform.unblockBackstore?.(this.#backstore);
      } else {
        step = 'queue-depth';
        const depth = await platform.setQueueDepth(this.#backstore, options.queueDepth);
        if (depth !== undefined && depth < options.queueDepth) {
          this.#logger.debug(
            { device: this.name, requested: options.queueDepth, kernel: depth },
            'kernel queue depth',
          );
        }
      }
      step = 'target';
      const targets: { target: TargetRef; lun: number | undefined }[] = [];
      if (attach) targets.push(attach);
      for (const spec of options.targets) {
        // The loopback LUN the earlier process made is still there: the same /dev/sdX.
        const kept =
          spec.type === 'loopback' ? adopted?.luns.find((l) => l.target.type === 'loopback') : undefined;
        if (kept) {
          this.#ownTargets.push(kept.target);
          this.#luns.push(kept);
          continue;
        }
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
          const nodePath = join(options.nodeDir, options.name);
          const kept = adopted
            ? await platform.adoptNode?.(
                nodePath,
                this.#disk,
                options.nodeKind,
                adopted.note.node === nodePath,
              )
            : undefined;
          this.#node = kept ?? (await platform.makeNode(nodePath, this.#disk, options.nodeKind));
        }
      }
    } catch (cause) {
      this.#state = 'failed';
      // Commands keep being served during the rollback (removing a LUN makes the kernel flush the disk).
      // An adopted disk is not ours to remove on failure: let it go as the earlier process left it.
      const rollbackErrors = this.#adopted
        ? await this.#letGo(ROLLBACK_DRAIN_TIMEOUT_MS, true).then(() => [])
        : await this.#teardown(ROLLBACK_DRAIN_TIMEOUT_MS);
      throw new DeviceSetupError(step, cause, rollbackErrors);
    }
    this.#state = 'ready';
    this.#logger.info(
      {
        device: this.name,
        disk: this.diskPath,
        node: this.nodePath,
        uio: this.uioPath,
        luns: this.luns,
        ...(this.#adopted ? { reattachedFrom: this.#adopted.ownerPid ?? null } : {}),
      },
      this.#adopted ? 'device reattached' : 'device ready',
    );
    this.emit('ready');
  }

  /** Refuses to adopt a backstore that serves other data (see ReattachMismatchError). */
  #checkIdentity(found: FoundBackstore): void {
    const options = this.#options;
    const differences: string[] = [];
    const size = options.blockCount * options.blockSize;
    if (found.sizeBytes !== size) differences.push(`size ${found.sizeBytes} bytes there, ${size} asked`);
    if (found.blockSize !== options.blockSize) {
      differences.push(`block size ${found.blockSize} there, ${options.blockSize} asked`);
    }
    if (found.serial !== undefined && found.serial !== options.identity.serial) {
      differences.push(`serial ${found.serial} there, ${options.identity.serial} asked`);
    }
    const source = found.note.source;
    if ((source ?? '') !== (options.source ?? '')) {
      differences.push(
        `source ${JSON.stringify(source ?? null)} there, ${JSON.stringify(options.source ?? null)} asked`,
      );
    }
    if (differences.length > 0) throw new ReattachMismatchError(options.name, differences);
  }

  /** True when open() adopted a disk an earlier process left (reattach). */
  get reattached(): boolean {
    return this.#adopted !== undefined;
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
  close(options: DeviceCloseOptions = {}): Promise<void> {
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

  /**
   * Stops serving and leaves the disk for the next process (a restart or an upgrade):
   * stops taking commands, lets those in flight finish (up to drainTimeoutMs), then
   * unmaps and closes the ring. The backstore, LUN, `/dev/sdX`, the node and the
   * ownership stay; the kernel holds new commands in the ring for up to
   * `commandTimeoutS` until a process opens the same name (reattach), which fails
   * them back with BUSY for the initiator to retry. Commands still in flight at the
   * deadline are abandoned the same way: exit soon after, so that no backend call
   * of this process lands after the next one took over.
   */
  async detach(options: DeviceCloseOptions = {}): Promise<{ abandoned: number }> {
    if (this.#state !== 'ready') {
      throw new DeviceClosedError(`device '${this.name}' is ${this.#state}: only a ready device can detach`);
    }
    this.#state = 'closing';
    const abandoned = await this.#letGo(options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, false);
    this.#state = 'closed';
    this.#closing = Promise.resolve();
    this.#onRelease?.();
    this.#logger.info({ device: this.name, abandoned }, 'device detached');
    this.emit('close');
    return { abandoned };
  }

  /**
   * Closes the ring and forgets every object without removing it (detach, or a failed
   * adoption, which also unblocks the ring again: the state a dead process leaves).
   */
  async #letGo(drainTimeoutMs: number, unblock: boolean): Promise<number> {
    this.#unsubscribeUnit?.();
    this.#unsubscribeUnit = undefined;
    const ring = this.#ring;
    this.#ring = undefined;
    const backstore = this.#backstore;
    if (backstore) detachedHere.add(backstore.path);
    let abandoned = 0;
    try {
      abandoned = ring ? (await ring.close({ drainTimeoutMs })).abandoned.length : 0;
      if (unblock && backstore) await this.#platform.unblockBackstore?.(backstore);
    } catch (error) {
      this.#logger.warn({ device: this.name, err: error }, 'letting the disk go failed');
    }
    // What stays belongs to the next process now: close() must not remove it.
    this.#node = undefined;
    this.#luns = [];
    this.#ownTargets = [];
    this.#disk = undefined;
    this.#backstore = undefined;
    this.#uio = undefined;
    return abandoned;
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
    this.#unsubscribeUnit?.();
    this.#unsubscribeUnit = undefined;
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

  /** Resolves when no command is in flight, or after the drain deadline (see #abortInFlight). */
  #drained(): Promise<void> {
    if ((this.#ring?.inFlight ?? 0) === 0 || this.#lateCommandBoundMs !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #wakeDrainWaiters(): void {
    for (const wake of this.#drainWaiters.splice(0)) wake();
  }

  /**
   * Drain deadline: abort the handlers still running and answer TASK ABORTED
   * for them (ring.abortNow). Those whose backend may still use the ring's
   * memory (in-place reads, zero-copy writes) are answered with KEEP_BUF, so
   * the kernel keeps their blocks from other commands until they end; without
   * KEEP_BUF they are answered when they end, or abandoned when the ring
   * closes (which keeps the memory mapped until then). Commands that arrive
   * later (sd flushing the disk while the LUN goes away, midlayer retries)
   * still run, each bounded by the same timeout: refusing them with BUSY would
   * make the kernel retry them for minutes.
   */
  #abortInFlight(boundMs: number): void {
    this.#lateCommandBoundMs = boundMs;
    const ring = this.#ring;
    const inFlight = ring?.commandsInFlight() ?? [];
    if (ring !== undefined && inFlight.length > 0) {
      this.#logger.warn({ device: this.name, inFlight: inFlight.length }, 'drain timeout: aborting commands');
      for (const command of inFlight) this.#abortCommand(ring, command);
    }
    this.#wakeDrainWaiters();
  }

  #abortCommand(ring: TcmuRing, command: RingCommand): void {
    const reason = new DeviceClosedError(`device '${this.name}' closed before the command completed`);
    if (ring.abortNow(command, reason)) this.#count(command, STATUS_TASK_ABORTED, 0, 'none');
  }

  // ---------------------------------------------------------------- data path

  /**
   * One command, one pass: the ring's command object goes to the unit as the
   * request itself (or through the handler chain), and the result goes
   * straight back into the ring entry. A synchronous backend answers in this
   * same call: no promise, no closure.
   */
  #serve(command: RingCommand): void {
    this.#metrics.started();
    if (this.#lateCommandBoundMs !== undefined) this.#boundLateCommand(command);
    let result: CommandResult | HandlerResult | Promise<CommandResult | HandlerResult>;
    try {
      const unit = this.#direct;
      result = unit !== undefined ? unit.execute(command) : this.#emulation.handler!(command);
    } catch (error) {
      this.#handlerFailed(command, error);
      return;
    }
    if (isPromise(result)) {
      result.then(
        (answer) => this.#finish(command, answer),
        (error: unknown) => this.#handlerFailed(command, error),
      );
    } else {
      this.#finish(command, result);
    }
  }

  /** A command that arrived after the drain deadline: bounded by the same timeout. */
  #boundLateCommand(command: RingCommand): void {
    const ring = this.#ring;
    if (ring === undefined) return;
    const timer = setTimeout(() => {
      if (command.state === 'active') this.#abortCommand(ring, command);
    }, this.#lateCommandBoundMs);
    timer.unref?.();
  }

  #handlerFailed(command: RingCommand, error: unknown): void {
    if (command.state === 'active') {
      this.#logger.error({ device: this.name, id: command.id, err: error }, 'handler failed');
      this.#emitError(
        new HandlerError(`handler failed on command ${command.id} (opcode 0x${hex2(command.opcode)})`, {
          cause: error,
        }),
      );
    }
    // Also for a command answered at the deadline: its end gives back what it held (KEEP_BUF).
    this.#answer(command, STATUS_CHECK_CONDITION, this.#internalFailureSense(), undefined, 'none');
  }

  /** Puts a result into the ring: Data-In in place (copied only when it is not ring memory already), then the completion. */
  #finish(command: RingCommand, result: CommandResult | HandlerResult): void {
    let direction = (result as CommandResult).direction as DataDirection | undefined;
    if (direction === undefined) {
      // A custom handler's answer: checked once, here (the emulation's answers are well formed).
      if (!isHandlerResult(result)) {
        this.#logger.error({ device: this.name, id: command.id }, 'handler returned no valid result');
        this.#emitError(new HandlerError(`handler returned no valid result for command ${command.id}`));
        this.#answer(command, STATUS_CHECK_CONDITION, this.#internalFailureSense(), undefined, 'none');
        return;
      }
      direction = this.#emulation.directionOf(command.cdb);
    }
    let readLen: number | undefined;
    const dataIn = result.dataIn;
    if (command.state === 'active') {
      if (dataIn !== undefined && dataIn.length > 0) {
        readLen = command.isRingMemory(dataIn)
          ? Math.min(dataIn.length, command.dataInLength)
          : command.writeDataIn(dataIn);
      } else if (direction === 'in' || direction === 'bidi') {
        // Declare Data-In even when none was produced, so nothing stale reaches the initiator;
        // a custom handler that filled dataInBuffer in place produced all of it (the ring's default).
        const residual = (result as CommandResult).residual;
        if (residual !== undefined) readLen = command.dataInLength - residual;
        else if (!command.dataInExposed) readLen = 0;
      }
    }
    this.#answer(command, result.status, result.sense, readLen, direction ?? 'none');
  }

  #answer(
    command: RingCommand,
    status: number,
    sense: Uint8Array | undefined,
    readLen: number | undefined,
    direction: DataDirection,
  ): void {
    const ring = this.#completions;
    if (ring === undefined) return;
    let answered: boolean;
    try {
      answered = ring.complete(command, status, sense, readLen);
    } catch (error) {
      this.#emitError(error as Error);
      return;
    }
    // false: answered already at the drain deadline, or abandoned by the ring's close.
    if (answered) this.#count(command, status, readLen ?? 0, direction, sense);
  }

  /** Metrics and the 'command' event, once per answered command. */
  #count(
    command: RingCommand,
    status: number,
    dataIn: number,
    direction: DataDirection,
    sense?: Uint8Array,
  ): void {
    if (!this.#clockFresh) {
      this.#clock = performance.now(); // one clock read per batch of completions
      this.#clockFresh = true;
      queueMicrotask(this.#staleClock);
    }
    const endedAt = this.#clock;
    // Whole microseconds and milliseconds: small integers, no boxed number per command.
    const latencyUs = Math.round((endedAt - command.receivedAt) * 1000);
    const opcode = command.opcode;
    const cdb = command.cdb;
    const serviceAction = opcode === 0x7f && cdb.length >= 10 ? (cdb[8]! << 8) | cdb[9]! : 0;
    const dataOut = direction === 'out' || direction === 'bidi' ? command.dataOutLength : 0;
    this.#metrics.completed(opcode, serviceAction, status, dataIn, dataOut, latencyUs, Math.floor(endedAt));
    if (status === STATUS_CHECK_CONDITION && sense !== undefined && sense.length >= 3) {
      // Fixed format (70h/71h) has the key in byte 2, descriptor format (72h/73h) in byte 1.
      this.#metrics.senseKey((sense[0]! & 0x7e) === 0x72 ? sense[1]! : sense[2]!);
    }
    if (this.listenerCount('command') > 0) {
      this.emit('command', {
        id: command.id,
        cdb: cdb.slice(),
        opcode,
        status,
        sense,
        dataInBytes: dataIn,
        dataOutBytes: status === STATUS_GOOD ? dataOut : 0,
        latencyMs: latencyUs / 1000,
      });
    }
    if (this.#drainWaiters.length > 0 && (this.#ring?.inFlight ?? 0) === 0) this.#wakeDrainWaiters();
  }

  // ---------------------------------------------------------------- the lane

  /**
   * Plain READ/WRITE served by the ring itself whenever the unit would answer them
   * GOOD anyway (see plainIoProfile): inside the addon on the backend's file
   * (nativeLane), or on the JS thread through a synchronous backend (jsLane). The
   * gate follows the unit's state and closes while someone watches commands.
   */
  #startLane(ring: TcmuRing): void {
    const unit = this.unit!;
    this.#configureLane(ring, unit);
    this.#unsubscribeUnit = unit.onStateChange(() => {
      if (this.#ring === undefined) return;
      const profile = this.#laneProfile;
      if (
        profile === undefined ||
        unit.backend.blockCount !== profile.blockCount ||
        this.#laneEntries.some((entry, i) => unit.table.get(LANE_OPCODES[i]!) !== entry)
      ) {
        this.#configureLane(this.#ring, unit);
      }
      this.#updateLaneGate();
    });
    this.#metrics.includeLane(ring.lane.stats, () => ring.lane.awaiting);
    this.#updateLaneGate();
  }

  #configureLane(ring: TcmuRing, unit: LogicalUnit): void {
    const profile = plainIoProfile(unit);
    this.#laneProfile = profile;
    this.#laneEntries = LANE_OPCODES.map((opcode) => unit.table.get(opcode));
    ring.lane.configure({
      ...(this.#options.nativeLane ? { fd: unit.backend.directFile!.fd } : { io: unit.backend }),
      blockSize: profile.blockSize,
      blockCount: profile.blockCount,
      maxTransferBlocks: profile.maxTransferBlocks,
      opcodes: profile.opcodes,
    });
  }

  #updateLaneGate(): void {
    const ring = this.#ring;
    const unit = this.unit;
    if (ring === undefined || unit === undefined || !ring.lane.configured) return;
    const open = this.listenerCount('command') === 0;
    const { reads, writes } = unit.plainIo(this.#options.nexus);
    ring.lane.setGate(open && reads, open && writes);
  }

  /** HARDWARE ERROR / INTERNAL TARGET FAILURE (44 00): what a handler bug reports, in the unit's sense format. */
  #internalFailureSense(): Uint8Array {
    return senseFor(SenseReasons.INTERNAL_TARGET_FAILURE, {}, this.unit?.modes.descriptorSense ?? false);
  }

  #onRingError(error: Error): void {
    this.#logger.error({ device: this.name, err: error }, 'ring failed');
    this.#emitError(error);
    if (error instanceof CorruptRingError) void this.#recover(error);
  }

  /**
   * After a corrupt ring stopped intake: let the commands still running finish (they may
   * use ring memory, which the kernel reuses after a reset), then block, reset the ring
   * (what it held completes with BUSY for the initiator to retry), serve it from the
   * start again and unblock. State 'recovering' meanwhile; 'failed' if that is impossible.
   */
  async #recover(cause: Error): Promise<void> {
    const ring = this.#ring;
    const backstore = this.#backstore;
    const platform = this.#platform;
    if (this.#state !== 'ready' || !ring || !backstore || !platform.resetRing) return;
    this.#state = 'recovering';
    try {
      await ring.drain(RECOVERY_DRAIN_TIMEOUT_MS);
      if (ring.inFlight > 0)
        throw new DeviceError(
          `${ring.inFlight} command(s) still running after ${RECOVERY_DRAIN_TIMEOUT_MS} ms`,
        );
      await platform.resetRing(backstore);
      ring.recover();
      await platform.unblockBackstore?.(backstore);
    } catch (error) {
      if (this.#state !== 'recovering') return; // closed meanwhile
      this.#state = 'failed';
      const failure = new DeviceError(
        `device '${this.name}' could not recover from a corrupt ring: ${String((error as Error).message ?? error)}`,
        { cause: error },
      );
      this.#logger.error({ device: this.name, err: failure }, 'ring recovery failed');
      this.#emitError(failure);
      return;
    }
    if (this.#state !== 'recovering') return;
    this.#state = 'ready';
    this.#recoveries++;
    this.#logger.warn(
      { device: this.name, err: cause, recoveries: this.#recoveries },
      'ring reset: serving again',
    );
    this.emit('recovered', cause);
  }

  /** How many times a corrupt ring was reset and served again. */
  get recoveries(): number {
    return this.#recoveries;
  }

  /**
   * Walks of the ring that left commands waiting because `queueDepth` commands were in flight
   * (the kernel queues what no longer fits): a sign the backend is slower than the initiators.
   */
  get ringFullEvents(): number {
    return this.#completions?.fullEvents ?? 0;
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
