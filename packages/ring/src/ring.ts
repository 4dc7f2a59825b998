import { EventEmitter } from 'node:events';
import { closeSync, readFileSync } from 'node:fs';
import { ABI } from './abi.js';
import { type CommandSource, RingCommand } from './command.js';
import {
  AddonLoadError,
  CommandAbortedError,
  CorruptRingError,
  MailboxError,
  NativeError,
  RingClosedError,
  RingResetError,
  RingUsageError,
} from './errors.js';
import { NativeLane, NOT_SERVED } from './lane.js';
import {
  callNative,
  LANE_STATS,
  loadAddon,
  type NativeRingEngine,
  QueuedCompletion,
  RingRecord,
} from './native.js';

/** Capabilities the kernel announced in mailbox->flags (TCMU_MAILBOX_FLAG_CAP_*). */
export interface RingFlags {
  /** CAP_OOOC: completions may be out of order (slot stealing) */
  readonly ooo: boolean;
  /** CAP_READ_LEN: rsp.read_len is honoured (exact residuals) */
  readonly readLen: boolean;
  /** CAP_TMR: TMR entries may appear (when attrib/tmr_notification = 1) */
  readonly tmr: boolean;
  /** CAP_KEEP_BUF: reported only; this transport never keeps buffers */
  readonly keepBuf: boolean;
}

interface CommonOptions {
  /** Exact size of the map (maps/map0/size). Read from sysfs when omitted for /dev/uioN. */
  mapSize?: number;
  /** Commands handed to the handler at once; fetching pauses beyond it. Default 128. */
  maxInFlight?: number;
  /** The TCMU device's name, reported by every command (default: the uio path, or 'ring'). */
  device?: string;
  /** The I_T nexus id every command reports: the ring carries none (default ''). */
  nexus?: string;
  /**
   * Gives back a data buffer kept with TCMU_UFLAG_KEEP_BUF: writes the id to
   * the backstore's action/free_kept_buf. With it (and CAP_KEEP_BUF),
   * abortNow() can answer a command whose ring memory a backend may still
   * use; without it such a command is answered only when its backend is done.
   */
  freeKeptBuffer?: (id: number) => void | Promise<void>;
}

export interface UioRingOptions extends CommonOptions {
  /** e.g. '/dev/uio0'; opened O_RDWR | O_CLOEXEC | O_NONBLOCK and closed by close() */
  uioPath: string;
}

/** For simulators: the memory and the event channel are separate fds, owned by the caller. */
export interface FdRingOptions extends CommonOptions {
  memoryFd: number;
  eventFd: number;
  mapSize: number;
}

export type TcmuRingOptions = UioRingOptions | FdRingOptions;

export interface TmrNotice {
  /** TCMU_TMR_* (ABI.tmrType) */
  type: number;
  /** ids named by the kernel; those still in flight had their signal aborted */
  commandIds: number[];
}

export interface CloseOptions {
  /** How long to wait for commands in flight to be completed. Default 0. */
  drainTimeoutMs?: number;
}

export interface CloseResult {
  /** ids of commands still in flight at the deadline, left unreaped in the ring */
  abandoned: number[];
  /**
   * Whether a later opener can resume from cmd_tail (re-executing the
   * abandoned commands). False after an out-of-order completion overtook an
   * abandoned command: its entry is gone, so the ring must be reset
   * (action/reset_ring) before reuse.
   */
  resumable: boolean;
}

export interface TcmuRingEvents {
  command: [command: RingCommand];
  tmr: [notice: TmrNotice];
  error: [error: Error];
  close: [];
}

const DEFAULT_MAX_IN_FLIGHT = 128;
/** Records beyond maxInFlight: room for TMR entries in the same walk. */
const EXTRA_RECORDS = 64;
const SAM_STATUS_GOOD = 0x00;
const SAM_STATUS_CHECK_CONDITION = 0x02;
const SAM_STATUS_TASK_ABORTED = 0x40;
const IDS = ABI.maxCmdId + 1;
/** CDBs up to this length live in a per-id slot of the ring's CDB memory. */
const CDB_SLOT = 16;
const cdbClass = (length: number): number => (length === 6 ? 0 : length === 10 ? 1 : length === 12 ? 2 : 3);

/**
 * The userspace side of one TCMU command ring (see README.md for the
 * transport contract). The walk, the checks of every entry and the
 * completions run in the native engine; this class owns the command objects.
 */
export class TcmuRing extends EventEmitter<TcmuRingEvents> implements CommandSource {
  readonly flags: RingFlags;
  readonly mapSize: number;
  readonly maxInFlight: number;
  /** command ring: offset from map start and size in bytes */
  readonly cmdrOffset: number;
  readonly cmdrSize: number;
  /** data area: [dataOffset, mapSize) */
  readonly dataOffset: number;
  readonly device: string;
  readonly nexus: string;
  /** The native lane: plain READ/WRITE served in the addon (off until configured). */
  readonly lane: NativeLane;
  /** @internal the map (commands make their data views over it) */
  readonly buffer: ArrayBuffer;
  /** @internal per command id: performance.now() of the batch it arrived in */
  readonly receivedAt = new Float64Array(IDS);

  readonly #engine: NativeRingEngine;
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #records: Uint32Array;
  readonly #recordCapacity: number;
  /** The engine's completion queue and its sense bytes (no native call per completion). */
  readonly #queue: Uint32Array;
  readonly #queueSense: Uint8Array;
  readonly #mailboxFlags: number;
  readonly #ownedFd: number | undefined;
  readonly #commands: (RingCommand | undefined)[] = new Array(IDS);
  /** CDB memory, a slot per id, and its views by id and length (the kernel reuses the lowest free id) */
  readonly #cdbMemory = new Uint8Array(IDS * CDB_SLOT);
  readonly #cdbViews: (Uint8Array | undefined)[] = [];
  /** Off once a command was completed while its handler may still read its CDB (abortNow). */
  #cdbReuse = true;
  #inFlight = 0;
  #state: 'new' | 'open' | 'closing' | 'failed' | 'closed' = 'new';
  #publishScheduled = false;
  readonly #publishTask = () => this.#publish();
  /** The one plain 'command' listener, called without emit(); null: emit; undefined: look again. */
  #commandListener: ((command: RingCommand) => void) | null | undefined;
  #drainWaiters: Array<() => void> = [];
  /**
   * Commands whose ring memory a backend may still use although their entry is
   * answered (kept with KEEP_BUF) or abandoned: the map and the fd stay until
   * each has ended (the kernel releases kept buffers when the fd closes, and
   * may then give their pages to other commands).
   */
  #lent = 0;
  readonly #freeKeptBuffer: ((id: number) => void | Promise<void>) | undefined;
  #released = false;

  /**
   * Opens and maps a TCMU ring. Commands are delivered once a 'command'
   * listener is attached.
   * @throws NativeError (open/mmap), MailboxError (not a version-2 ring)
   */
  static open(options: TcmuRingOptions): TcmuRing {
    const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > ABI.maxCmdId) {
      throw new RingUsageError(`maxInFlight must be an integer in 1..${ABI.maxCmdId}, got ${maxInFlight}`);
    }
    const addon = loadAddon();
    if ('uioPath' in options) {
      const mapSize = options.mapSize ?? readUioMapSize(options.uioPath);
      const fd = callNative(() => addon.openUio(options.uioPath));
      try {
        return new TcmuRing(fd, fd, mapSize, maxInFlight, options, options.uioPath, fd);
      } catch (error) {
        closeSync(fd);
        throw error;
      }
    }
    return new TcmuRing(options.memoryFd, options.eventFd, options.mapSize, maxInFlight, options, 'ring');
  }

  private constructor(
    memoryFd: number,
    eventFd: number,
    mapSize: number,
    maxInFlight: number,
    options: CommonOptions,
    defaultName: string,
    ownedFd?: number,
  ) {
    super();
    if (!Number.isSafeInteger(mapSize) || mapSize < ABI.mailbox.size || mapSize % 4 !== 0) {
      throw new RingUsageError(
        `mapSize must be a multiple of 4 of at least ${ABI.mailbox.size} bytes, got ${mapSize}`,
      );
    }
    this.mapSize = mapSize;
    this.maxInFlight = maxInFlight;
    this.device = options.device ?? defaultName;
    this.nexus = options.nexus ?? '';
    this.#freeKeptBuffer = options.freeKeptBuffer;
    this.#ownedFd = ownedFd;
    this.#recordCapacity = maxInFlight + EXTRA_RECORDS;
    const addon = loadAddon();
    this.#engine = callNative(
      () =>
        new addon.RingEngine(memoryFd, eventFd, mapSize, this.#recordCapacity, (error, records) =>
          this.#onRecords(error, records),
        ),
    );
    try {
      this.buffer = this.#engine.buffer;
      this.#view = new DataView(this.buffer);
      this.#bytes = new Uint8Array(this.buffer);
      this.#records = new Uint32Array(this.#engine.records);
      // An addon built before the completion queue has none: refuse it rather than lose completions.
      if (!(this.#engine.completions instanceof ArrayBuffer)) {
        throw new AddonLoadError(
          'the @tcmu/ring native addon is stale: it has no completion queue; rebuild it',
        );
      }
      this.#queue = new Uint32Array(this.#engine.completions);
      this.#queueSense = new Uint8Array(this.#engine.completionSense);
      const mb = ABI.mailbox;
      const version = this.#view.getUint16(mb.version, true);
      if (version !== ABI.mailboxVersion) {
        throw new MailboxError(
          `mailbox version is ${version}; only version ${ABI.mailboxVersion} is supported`,
        );
      }
      const flags = this.#view.getUint16(mb.flags, true);
      this.#mailboxFlags = flags;
      this.flags = Object.freeze({
        ooo: (flags & ABI.mailboxFlags.ooo) !== 0,
        readLen: (flags & ABI.mailboxFlags.readLen) !== 0,
        tmr: (flags & ABI.mailboxFlags.tmr) !== 0,
        keepBuf: (flags & ABI.mailboxFlags.keepBuf) !== 0,
      });
      this.cmdrOffset = this.#view.getUint32(mb.cmdrOff, true);
      this.cmdrSize = this.#view.getUint32(mb.cmdrSize, true);
      this.dataOffset = this.cmdrOffset + this.cmdrSize;
      if (this.cmdrOffset < mb.size || this.cmdrOffset % ABI.opAlign !== 0) {
        throw new MailboxError(`cmdr_off ${this.cmdrOffset} must be a multiple of 8 and at least ${mb.size}`);
      }
      if (
        this.cmdrSize < ABI.cmdEntrySize ||
        this.cmdrSize % ABI.opAlign !== 0 ||
        this.dataOffset > mapSize
      ) {
        throw new MailboxError(
          `cmdr_size ${this.cmdrSize} does not fit a ${mapSize}-byte map at offset ${this.cmdrOffset}`,
        );
      }
      const tail = this.#view.getUint32(mb.cmdTail, true);
      if (tail >= this.cmdrSize || tail % ABI.opAlign !== 0) {
        throw new MailboxError(
          `cmd_tail ${tail} is not an aligned offset inside the ${this.cmdrSize}-byte ring`,
        );
      }
      this.lane = new NativeLane(this.#engine);
    } catch (error) {
      this.#engine.unmap();
      throw error;
    }
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event !== 'command') return;
      this.#commandListener = undefined;
      if (this.#state === 'new') setImmediate(() => this.#start());
    });
    (this as EventEmitter).on('removeListener', (event: string | symbol) => {
      if (event === 'command') this.#commandListener = undefined;
    });
  }

  /** Commands handed out and not yet completed. */
  /**
   * Walks that left commands waiting in the ring because `maxInFlight` were in flight: the
   * ring was full from our side, and the kernel queues what does not fit (its qfull queue).
   */
  get fullEvents(): number {
    return this.lane.stats[LANE_STATS.ringFull]!;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get closed(): boolean {
    return this.#state === 'closed';
  }

  /**
   * Completes a command: the response is queued for the engine (no native call),
   * which writes it into the ring entry and publishes it with the next batch (one
   * release-store of cmd_tail and one kick for all completions made in the same
   * tick). Data-In must be in place already (`writeDataIn`, or the `dataInBuffer` views).
   *
   * `readLen`: Data-In bytes produced. Default: the high-water mark of
   * writeDataIn, or the whole buffer once `dataInBuffer` was handed out. A
   * Data-In command that produced nothing says 0, so stale bytes are zeroed.
   * At most 96 bytes of `sense` (TCMU_SENSE_BUFFERSIZE) reach the initiator.
   *
   * @returns false when the answer was discarded: the command was abandoned by
   *   close() or already answered by abortNow().
   * @throws RingUsageError (not in flight on this ring or completed twice, bad status or readLen)
   */
  complete(command: RingCommand, status: number, sense?: Uint8Array, readLen?: number): boolean {
    const id = command.id;
    if (this.#commands[id] !== command) return this.#completeStale(command);
    if ((status & 0xff) !== status) throw new RingUsageError(`status must be a byte, got ${status}`);
    const capacity = command.dataInLength;
    if (readLen !== undefined && (!Number.isSafeInteger(readLen) || readLen < 0 || readLen > capacity)) {
      throw new RingUsageError(`readLen ${readLen} is outside the ${capacity}-byte Data-In buffer`);
    }
    // Mirrors tcmu_handle_completion: decides what the kernel copies back and zeroes
    // Data-In bytes it would otherwise copy stale.
    let reported = 0;
    let uflags = 0;
    if (capacity > 0 && (readLen !== undefined || command.dataInWritten > 0 || command.dataInExposed)) {
      const produced = readLen ?? (command.dataInExposed ? capacity : command.dataInWritten);
      // The kernel honours read_len only for DMA_FROM_DEVICE and only when non-zero.
      if (this.flags.readLen && !command.bidirectional && produced > 0) {
        reported = produced;
        uflags = ABI.uflags.readLen;
      } else if (status !== SAM_STATUS_CHECK_CONDITION || command.bidirectional) {
        // Without a valid read_len, CHECK CONDITION copies nothing; anything else the whole buffer.
        command.zeroDataIn(produced, capacity);
      }
    }
    this.#enqueue(id, status, reported, uflags, sense);
    command.state = 'completed';
    this.#commands[id] = undefined;
    this.#inFlight--;
    this.#schedulePublish();
    return true;
  }

  /**
   * Answers TASK ABORTED for a command whose handler may still be running (a
   * drain deadline) and aborts its signal. A command whose ring memory was
   * handed out (a backend may still be reading or writing those blocks, which
   * the kernel reuses once the command is reaped) is answered with
   * TCMU_UFLAG_KEEP_BUF, so the kernel keeps its blocks until the handler
   * ends and complete() gives them back (freeKeptBuffer); without KEEP_BUF
   * support it is not answered now. Returns whether it was answered.
   */
  abortNow(command: RingCommand, reason: Error): boolean {
    command.abort(reason);
    if (this.#commands[command.id] !== command) return false;
    const keep = command.memoryExposed;
    if (keep && (!this.flags.keepBuf || this.#freeKeptBuffer === undefined)) return false;
    // The handler may still read its CDB: later commands get CDB memory of their own.
    this.#cdbReuse = false;
    if (!keep) {
      this.complete(command, SAM_STATUS_TASK_ABORTED, undefined, 0);
      command.state = 'aborted';
      return true;
    }
    this.#enqueue(command.id, SAM_STATUS_TASK_ABORTED, 0, ABI.uflags.keepBuf, undefined);
    command.state = 'kept';
    this.#commands[command.id] = undefined;
    this.#inFlight--;
    this.#lent++;
    this.#schedulePublish();
    return true;
  }

  /**
   * Serves again after the kernel reset the ring (`action/reset_ring`: it completes every
   * command it held and sets cmd_head = cmd_tail = 0), e.g. once a CorruptRingError
   * stopped intake. The commands this ring still tracks are forgotten (their signals
   * abort with RingResetError, their completions are ignored) and intake restarts at the
   * mailbox's cmd_tail. Refused while any command may still use ring memory: after a
   * reset the kernel gives those data blocks to new commands.
   */
  recover(): void {
    if (this.#state !== 'failed' && this.#state !== 'open') {
      throw new RingUsageError(`cannot recover a ring that is ${this.#state}`);
    }
    const inFlight = this.commandsInFlight();
    if (this.#lent > 0 || inFlight.some((command) => command.memoryExposed)) {
      throw new RingUsageError('cannot recover while a command may still use ring memory: wait for it first');
    }
    const reset = new RingResetError('the ring was reset before this command completed');
    for (const command of inFlight) {
      command.state = 'abandoned';
      command.abort(reset);
      this.#commands[command.id] = undefined;
    }
    this.#inFlight = 0;
    this.#engine.restart(this.#view.getUint32(ABI.mailbox.cmdTail, true));
    this.#state = 'open';
    this.#pull();
  }

  /** Commands in flight (for a drain deadline). */
  commandsInFlight(): RingCommand[] {
    const out: RingCommand[] = [];
    if (this.#inFlight === 0) return out;
    for (const command of this.#commands) if (command) out.push(command);
    return out;
  }

  /** Resolves once no command is in flight, or after `timeoutMs`. */
  drain(timeoutMs: number): Promise<void> {
    if (this.#inFlight === 0 || timeoutMs <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#drainWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * Stops intake, waits up to drainTimeoutMs for commands in flight, publishes
   * the last completions, then unmaps (every data view becomes length 0) and
   * closes the fd it opened. Commands still in flight are abandoned: their
   * signal aborts with RingClosedError and their entries stay unreaped; the
   * map stays until those whose ring memory was handed out have completed.
   */
  async close(options: CloseOptions = {}): Promise<CloseResult> {
    if (this.#state === 'closed') return { abandoned: [], resumable: true };
    if (this.#state === 'closing') {
      await new Promise<void>((resolve) => this.once('close', resolve));
      return { abandoned: [], resumable: !this.#engine.overtaken };
    }
    this.#state = 'closing';
    this.#engine.stop();
    await this.drain(options.drainTimeoutMs ?? 0);
    this.#tryPublish();
    const abandoned: number[] = [];
    const closedError = new RingClosedError('the ring was closed before this command completed');
    for (const command of this.commandsInFlight()) {
      abandoned.push(command.id);
      command.state = 'abandoned';
      command.abort(closedError);
      if (command.memoryExposed) this.#lent++;
      this.#commands[command.id] = undefined;
    }
    this.#inFlight = 0;
    this.#state = 'closed';
    if (this.#lent === 0) this.#release();
    this.emit('close');
    return { abandoned, resumable: abandoned.length === 0 || !this.#engine.overtaken };
  }

  // ------------------------------------------------------------------ intake

  #start(): void {
    if (this.#state !== 'new' || this.listenerCount('command') === 0) return;
    this.#state = 'open';
    const tail = this.#view.getUint32(ABI.mailbox.cmdTail, true);
    callNative(() =>
      this.#engine.start(this.cmdrOffset, this.cmdrSize, tail, this.#mailboxFlags, this.maxInFlight),
    );
    // Entries published before we polled raised no event for us.
    this.#pull();
  }

  #onRecords(error: Error | null, records: number): void {
    this.#consume(records);
    if (error) this.#fail(ringError(error));
    else if (records > 0) this.#schedulePublish();
  }

  /** Walks now (after completions made room) and publishes; loops while the records were full. */
  #pull(): void {
    while (this.#state === 'open') {
      let records: number;
      try {
        records = this.#engine.fetch();
      } catch (error) {
        this.#consume(((error as { records?: number }).records ?? 0) as number);
        this.#fail(ringError(error as Error));
        return;
      }
      this.#consume(records);
      this.#tryPublish();
      if (records < this.#recordCapacity) return;
    }
  }

  /** Turns the engine's records into commands and TMR notices, in ring order. */
  #consume(count: number): void {
    if (count === 0) return;
    const records = this.#records;
    const view = this.#view;
    const now = performance.now();
    const lane = this.#state === 'open' ? this.lane.js : undefined;
    const bytes = this.#bytes;
    const buffer = this.buffer;
    // what complete() reports for GOOD with the whole buffer produced (a write: nothing)
    const readLen = this.flags.readLen;
    let laneServed = 0;
    for (let i = 0; i < count; i++) {
      const r = i * RingRecord.words;
      if (records[r] === RingRecord.command) {
        const id = records[r + 1]!;
        const entry = records[r + 2]!;
        const iovCount = records[r + 6]!;
        const bidiCount = records[r + 7]!;
        const first = entry + ABI.req.iov;
        const base = iovCount > 0 ? readU64(view, first + ABI.iovec.base) : 0;
        const length = iovCount > 0 ? readU64(view, first + ABI.iovec.len) : 0;
        const iov = iovCount > 1 ? readIovecs(view, first, iovCount) : undefined;
        let served: number | Promise<void> = NOT_SERVED;
        if (lane !== undefined && bidiCount === 0 && iovCount > 0) {
          served = lane.serve(bytes, buffer, records[r + 4]!, base, length, iov);
          if (typeof served === 'number' && served !== NOT_SERVED) {
            if (readLen && served > 0)
              this.#enqueue(id, SAM_STATUS_GOOD, served, ABI.uflags.readLen, undefined);
            else this.#enqueue(id, SAM_STATUS_GOOD, 0, 0, undefined);
            laneServed++;
            continue;
          }
        }
        const bidi =
          bidiCount > 0 ? readIovecs(view, first + iovCount * ABI.iovec.size, bidiCount) : undefined;
        const cdb = this.#copyCdb(id, records[r + 4]!, records[r + 5]!);
        const command = new RingCommand(this, id, cdb, base, length, iov, bidi);
        this.receivedAt[id] = now;
        this.#commands[id] = command;
        this.#inFlight++;
        if (typeof served !== 'number') this.#awaitLane(command, served);
        else if (this.#state === 'open') this.#deliver(command);
      } else {
        const type = records[r + 1]!;
        const ids = records[r + 3]!;
        const commandIds: number[] = [];
        for (let n = 0; n < records[r + 2]!; n++) {
          const id = view.getUint16(ids + 2 * n, true);
          commandIds.push(id);
          this.#commands[id]?.abort(new CommandAbortedError(id, type));
        }
        this.emit('tmr', { type, commandIds });
      }
    }
    // the callers publish (#onRecords schedules it, #pull does it)
    if (laneServed > 0) lane!.recordLatency((performance.now() - now) * 1000, laneServed);
  }

  #deliver(command: RingCommand): void {
    const listener = this.#commandListener ?? this.#soleCommandListener();
    if (listener !== null) listener.call(this, command);
    else this.emit('command', command);
  }

  /**
   * A lane transfer that returned a promise: the command is tracked like any other (its
   * memory is with the backend) and ends when the transfer does, TASK ABORTED if aborted
   * meanwhile, as the emulation answers; a failed one goes to JS, which retries it.
   */
  #awaitLane(command: RingCommand, transfer: Promise<void>): void {
    const write = (command.opcode & 0x02) !== 0;
    if (write) void (command.dataOutSegments ?? command.dataOut);
    else void command.dataInBuffer;
    this.lane.countAwaiting(1);
    const end = (good: boolean) => {
      if (command.state === 'completed') return;
      if (good) this.complete(command, SAM_STATUS_GOOD, undefined, write ? undefined : command.dataInLength);
      else this.complete(command, SAM_STATUS_TASK_ABORTED, undefined, 0);
    };
    transfer.then(
      () => {
        this.lane.countAwaiting(-1);
        end(command.state === 'active' && !command.aborted);
      },
      () => {
        this.lane.countAwaiting(-1);
        if (command.state === 'active' && this.#state === 'open') this.#deliver(command);
        else end(false);
      },
    );
  }

  /** emit() costs a rest array and a Reflect.apply per command; one plain listener needs neither. */
  #soleCommandListener(): ((command: RingCommand) => void) | null {
    const listeners = this.rawListeners('command');
    const only = listeners.length === 1 ? (listeners[0] as { listener?: unknown }) : undefined;
    // a once() wrapper carries `listener`: emit() must remove it
    const listener =
      only !== undefined && only.listener === undefined
        ? (only as unknown as (command: RingCommand) => void)
        : null;
    this.#commandListener = listener;
    return listener;
  }

  /** The CDB of a new command, in its id's slot (the engine checked it lies inside the entry). */
  #copyCdb(id: number, offset: number, length: number): Uint8Array {
    const bytes = this.#bytes;
    if (length > CDB_SLOT || !this.#cdbReuse) return bytes.slice(offset, offset + length);
    const memory = this.#cdbMemory;
    const slot = id * CDB_SLOT;
    for (let i = 0; i < length; i++) memory[slot + i] = bytes[offset + i]!;
    const key = id * 4 + cdbClass(length);
    let view = this.#cdbViews[key];
    if (view === undefined || view.length !== length) {
      view = new Uint8Array(memory.buffer, slot, length);
      this.#cdbViews[key] = view;
    }
    return view;
  }

  /** Corrupt ring or dead fd: stop intake for good and report once. */
  #fail(error: Error): void {
    if (this.#state !== 'open') return;
    this.#state = 'failed';
    this.#engine.stop();
    this.emit('error', error);
  }

  // -------------------------------------------------------------- completion

  /** Unmaps and closes the fd it opened: once closed and nothing is lent any more. */
  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#engine.unmap();
    if (this.#ownedFd !== undefined) closeSync(this.#ownedFd);
  }

  /** The late end of a command answered by abortNow or abandoned by close: give back what it held. */
  #completeStale(command: RingCommand): boolean {
    const { state } = command;
    if (state === 'kept') {
      command.state = 'completed';
      if (!this.#released) {
        try {
          const freed = this.#freeKeptBuffer!(command.id);
          if (freed instanceof Promise) freed.catch((error) => this.#keptBufferLost(command.id, error));
        } catch (error) {
          this.#keptBufferLost(command.id, error);
        }
      }
      this.#endLent();
      return false;
    }
    if (state === 'abandoned' || state === 'aborted') {
      command.state = 'completed';
      if (state === 'abandoned' && command.memoryExposed) this.#endLent();
      return false;
    }
    throw new RingUsageError(`command ${command.id} is not in flight on this ring (completed twice?)`);
  }

  #endLent(): void {
    if (--this.#lent === 0 && this.#state === 'closed') this.#release();
  }

  /** free_kept_buf failed: the kernel frees kept buffers at ring reset and when the fd closes anyway. */
  #keptBufferLost(id: number, error: unknown): void {
    if (this.listenerCount('error') > 0) {
      this.emit(
        'error',
        new RingUsageError(`could not give back the kept buffer of command ${id}: ${String(error)}`),
      );
    }
  }

  /** Queues a completion for the engine, which writes it into the ring at its next walk or publish. */
  #enqueue(id: number, status: number, readLen: number, uflags: number, sense: Uint8Array | undefined): void {
    const queue = this.#queue;
    let n = queue[0]!;
    // Cannot fill (one per command in flight, and it holds recordCapacity > maxInFlight); if it did, write them now.
    if ((n + 2) * QueuedCompletion.words > queue.length) {
      this.#tryPublish();
      n = queue[0]!;
    }
    const at = (n + 1) * QueuedCompletion.words;
    let senseLength = 0;
    if (sense !== undefined && sense.length > 0) {
      senseLength = Math.min(sense.length, ABI.senseBufferSize);
      this.#queueSense.set(
        senseLength === sense.length ? sense : sense.subarray(0, senseLength),
        n * ABI.senseBufferSize,
      );
    }
    queue[at] = id;
    queue[at + 1] = status | (uflags << 8) | (senseLength << 16);
    queue[at + 2] = readLen;
    queue[0] = n + 1;
  }

  #schedulePublish(): void {
    if (this.#publishScheduled) return;
    this.#publishScheduled = true;
    queueMicrotask(this.#publishTask);
  }

  #publish(): void {
    this.#publishScheduled = false;
    if (this.#state === 'closed') return;
    this.#tryPublish();
    if (this.#inFlight === 0 && this.#drainWaiters.length > 0) {
      for (const wake of this.#drainWaiters.splice(0)) wake();
    }
    this.#pull();
  }

  #tryPublish(): void {
    try {
      this.#engine.publish();
    } catch (error) {
      this.#fail(NativeError.from(error) as Error);
    }
  }
}

function ringError(error: Error): Error {
  const { code, offset } = error as { code?: string; offset?: number };
  if (code === 'CORRUPT_RING') return new CorruptRingError(error.message, offset ?? 0);
  return NativeError.from(error) as Error;
}

function readU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

function readIovecs(view: DataView, first: number, count: number): number[] {
  const pairs: number[] = new Array(count * 2);
  for (let i = 0; i < count; i++) {
    const at = first + i * ABI.iovec.size;
    pairs[i * 2] = readU64(view, at + ABI.iovec.base);
    pairs[i * 2 + 1] = readU64(view, at + ABI.iovec.len);
  }
  return pairs;
}

/** Reads /sys/class/uio/uioN/maps/map0/size (hex) for a /dev/uioN path. */
export function readUioMapSize(uioPath: string, sysfsRoot = '/sys/class/uio'): number {
  const match = /uio(\d+)$/.exec(uioPath);
  if (!match) throw new RingUsageError(`cannot derive the map size from '${uioPath}'; pass mapSize`);
  const file = `${sysfsRoot}/uio${match[1]}/maps/map0/size`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw NativeError.from(error);
  }
  const size = Number(text);
  if (!Number.isSafeInteger(size) || size <= 0) throw new MailboxError(`${file} holds '${text}', not a size`);
  return size;
}
