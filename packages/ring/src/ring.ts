import { EventEmitter } from 'node:events';
import { closeSync, readFileSync } from 'node:fs';
import { ABI, scsiCommandSize } from './abi.js';
import { RingCommand } from './command.js';
import {
  CommandAbortedError,
  CorruptRingError,
  MailboxError,
  NativeError,
  RingClosedError,
  RingUsageError,
} from './errors.js';
import { callNative, loadAddon, type NativeMapping, type NativePoller } from './native.js';

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

export interface CompletionOptions {
  /** SAM status byte (GOOD 0x00, CHECK CONDITION 0x02, BUSY 0x08, TASK SET FULL 0x28...) */
  status: number;
  /** Sense data, at most 96 bytes (TCMU_SENSE_BUFFERSIZE); forwarded for CHECK CONDITION */
  sense?: Uint8Array;
  /** Data-In to scatter at offset 0 (same as writeDataIn(dataIn) before completing) */
  dataIn?: Uint8Array;
  /**
   * Data-In bytes produced. Default: the high-water mark of writeDataIn/dataIn
   * (the whole buffer after dataInSegments()). A Data-In command that produced
   * nothing must say `readLen: 0`, so stale buffer bytes are zeroed.
   */
  readLen?: number;
}

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

interface Slot {
  offset: number;
  length: number;
  /** undefined for PAD, TMR and unknown-op entries (nothing to complete) */
  command: RingCommand | undefined;
}

interface Completion {
  command: RingCommand;
  status: number;
  sense: Uint8Array | undefined;
  readLen: number;
  uflags: number;
}

const DEFAULT_MAX_IN_FLIGHT = 128;
const SAM_STATUS_CHECK_CONDITION = 0x02;

/**
 * The userspace side of one TCMU command ring (see README.md for the
 * transport contract).
 */
export class TcmuRing extends EventEmitter<TcmuRingEvents> {
  readonly flags: RingFlags;
  readonly mapSize: number;
  readonly maxInFlight: number;
  /** command ring: offset from map start and size in bytes */
  readonly cmdrOffset: number;
  readonly cmdrSize: number;
  /** data area: [dataOffset, mapSize) */
  readonly dataOffset: number;

  readonly #mapping: NativeMapping;
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  readonly #eventFd: number;
  readonly #ownedFd: number | undefined;
  #poller: NativePoller | undefined;

  /** private fetch cursor (ring offset), starts at cmd_tail */
  #cursor: number;
  /** our copy of cmd_tail */
  #tail: number;
  /** fetched, unreaped entries in ring order */
  readonly #slots: Slot[] = [];
  #slotHead = 0;
  readonly #inFlight = new Map<number, RingCommand>();
  #pending: Completion[] = [];
  #flushScheduled = false;
  #state: 'open' | 'closing' | 'failed' | 'closed' = 'open';
  #overtakenSlots = false;
  #drainWaiters: Array<() => void> = [];

  /**
   * Opens and maps a TCMU ring and starts polling it. Commands are delivered
   * once a 'command' listener is attached.
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
        return new TcmuRing(fd, fd, mapSize, maxInFlight, fd);
      } catch (error) {
        closeSync(fd);
        throw error;
      }
    }
    return new TcmuRing(options.memoryFd, options.eventFd, options.mapSize, maxInFlight, undefined);
  }

  private constructor(
    memoryFd: number,
    eventFd: number,
    mapSize: number,
    maxInFlight: number,
    ownedFd?: number,
  ) {
    super();
    if (!Number.isSafeInteger(mapSize) || mapSize < ABI.mailbox.size || mapSize % 4 !== 0) {
      throw new RingUsageError(
        `mapSize must be a multiple of 4 of at least ${ABI.mailbox.size} bytes, got ${mapSize}`,
      );
    }
    const addon = loadAddon();
    this.mapSize = mapSize;
    this.maxInFlight = maxInFlight;
    this.#eventFd = eventFd;
    this.#ownedFd = ownedFd;
    this.#mapping = callNative(() => new addon.Mapping(memoryFd, mapSize));
    try {
      this.#view = new DataView(this.#mapping.buffer);
      this.#bytes = new Uint8Array(this.#mapping.buffer);
      const mb = ABI.mailbox;
      const version = this.#view.getUint16(mb.version, true);
      if (version !== ABI.mailboxVersion) {
        throw new MailboxError(
          `mailbox version is ${version}; only version ${ABI.mailboxVersion} is supported`,
        );
      }
      const flags = this.#view.getUint16(mb.flags, true);
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
      const tail = this.#mapping.loadAcquire(mb.cmdTail);
      if (tail >= this.cmdrSize || tail % ABI.opAlign !== 0) {
        throw new MailboxError(
          `cmd_tail ${tail} is not an aligned offset inside the ${this.cmdrSize}-byte ring`,
        );
      }
      this.#tail = tail;
      this.#cursor = tail;
      this.#poller = callNative(() => new addon.Poller(eventFd, (error) => this.#onEvent(error)));
    } catch (error) {
      this.#mapping.unmap();
      throw error;
    }
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'command') setImmediate(() => this.#fetch());
    });
  }

  /** Commands handed out and not yet completed. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  get closed(): boolean {
    return this.#state === 'closed';
  }

  /**
   * Completes a command. The response is written into the ring and published
   * with the next batch: one release-store of cmd_tail and one kick for all
   * completions made in the same tick.
   * @throws RingUsageError (already completed, not ours, bad status/sense/readLen), RingClosedError
   */
  complete(command: RingCommand, options: CompletionOptions): void {
    if (this.#inFlight.get(command.id) !== command) {
      if (command.state === 'abandoned' || this.#state === 'closed') {
        throw new RingClosedError(`cannot complete command ${command.id}: the ring is closed`);
      }
      throw new RingUsageError(`command ${command.id} is not in flight on this ring (completed twice?)`);
    }
    const { status, sense, dataIn, readLen } = options;
    if (!Number.isInteger(status) || status < 0 || status > 0xff) {
      throw new RingUsageError(`status must be a byte, got ${status}`);
    }
    if (sense && sense.length > ABI.senseBufferSize) {
      throw new RingUsageError(
        `sense is ${sense.length} bytes; the ring carries at most ${ABI.senseBufferSize}`,
      );
    }
    if (
      readLen !== undefined &&
      (!Number.isSafeInteger(readLen) || readLen < 0 || readLen > command.dataInLength)
    ) {
      throw new RingUsageError(
        `readLen ${readLen} is outside the ${command.dataInLength}-byte Data-In buffer`,
      );
    }
    if (dataIn) {
      if (dataIn.length > command.dataInLength) {
        throw new RingUsageError(
          `dataIn is ${dataIn.length} bytes; the Data-In buffer holds ${command.dataInLength}`,
        );
      }
      command.writeDataIn(dataIn, 0);
    }
    const reported = this.#finishDataIn(command, status, readLen, dataIn !== undefined);
    command.state = 'completed';
    this.#inFlight.delete(command.id);
    this.#pending.push({
      command,
      status,
      sense,
      readLen: reported,
      uflags: reported > 0 ? ABI.uflags.readLen : 0,
    });
    this.#scheduleFlush();
  }

  /**
   * Stops intake, waits up to drainTimeoutMs for commands in flight, publishes
   * the last completions, then unmaps (every data view becomes length 0) and
   * closes the fd it opened. Commands still in flight are abandoned: their
   * signal aborts with RingClosedError and their entries stay unreaped.
   */
  async close(options: CloseOptions = {}): Promise<CloseResult> {
    if (this.#state === 'closed') return { abandoned: [], resumable: true };
    if (this.#state !== 'closing') {
      this.#state = 'closing';
      this.#stopPolling();
      const timeout = options.drainTimeoutMs ?? 0;
      if (this.#inFlight.size > 0 && timeout > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeout);
          this.#drainWaiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    } else {
      await new Promise<void>((resolve) => this.once('close', resolve));
      return { abandoned: [], resumable: !this.#overtakenSlots };
    }
    this.#flush();
    const abandoned = [...this.#inFlight.keys()];
    const closedError = new RingClosedError('the ring was closed before this command completed');
    for (const command of this.#inFlight.values()) {
      command.state = 'abandoned';
      command.abort(closedError);
    }
    this.#inFlight.clear();
    this.#mapping.unmap();
    if (this.#ownedFd !== undefined) closeSync(this.#ownedFd);
    this.#state = 'closed';
    this.emit('close');
    return { abandoned, resumable: abandoned.length === 0 || !this.#overtakenSlots };
  }

  // ------------------------------------------------------------------ intake

  #onEvent(error: Error | null): void {
    if (error) {
      this.#fail(NativeError.from(error) as Error);
      return;
    }
    this.#fetch();
  }

  #fetch(): void {
    if (this.#state !== 'open' || this.listenerCount('command') === 0) return;
    const size = this.cmdrSize;
    const head = this.#mapping.loadAcquire(ABI.mailbox.cmdHead);
    if (head >= size || head % ABI.opAlign !== 0) {
      this.#fail(
        new CorruptRingError(`cmd_head ${head} is not an aligned offset inside the ${size}-byte ring`, head),
      );
      return;
    }
    const view = this.#view;
    while (this.#cursor !== head && this.#inFlight.size < this.maxInFlight) {
      const at = this.#cursor;
      const entry = this.cmdrOffset + at;
      const lenOp = view.getUint32(entry + ABI.header.lenOp, true);
      const length = lenOp & ~ABI.opMask;
      const op = lenOp & ABI.opMask;
      const available = (head - at + size) % size;
      let problem: string | undefined;
      if (length === 0) problem = 'entry length is 0';
      else if (length > available)
        problem = `entry length ${length} runs past cmd_head (${available} bytes published)`;
      else if (at + length > size) problem = `entry length ${length} crosses the end of the ring`;
      if (problem) {
        this.#fail(new CorruptRingError(problem, at));
        return;
      }
      let command: RingCommand | undefined;
      if (op === ABI.op.cmd) {
        const parsed = this.#parseCommand(at, length);
        if (typeof parsed === 'string') {
          this.#fail(new CorruptRingError(parsed, at));
          return;
        }
        command = parsed;
      } else if (op === ABI.op.tmr) {
        const problem = this.#handleTmr(at, length);
        if (problem) {
          this.#fail(new CorruptRingError(problem, at));
          return;
        }
      } else if (op !== ABI.op.pad) {
        // An opcode from a newer kernel: flag it and step over (the kernel reaps it as a no-op).
        this.#bytes[entry + ABI.header.uflags]! |= ABI.uflags.unknownOp;
      }
      this.#slots.push({ offset: at, length, command });
      this.#cursor = (at + length) % size;
      if (command) {
        this.#inFlight.set(command.id, command);
        this.emit('command', command);
        if (this.#state !== 'open') return;
      }
    }
    // Entries that need no completion (PAD/TMR at the tail) can be released now.
    if (this.#slotHead < this.#slots.length && this.#slots[this.#slotHead]!.command === undefined) {
      this.#scheduleFlush();
    }
  }

  /** Validates and copies out a CMD entry; returns a problem description when corrupt. */
  #parseCommand(at: number, length: number): RingCommand | string {
    const view = this.#view;
    const entry = this.cmdrOffset + at;
    if (length < ABI.cmdEntrySize) return `CMD entry length ${length} is below ${ABI.cmdEntrySize}`;
    const id = view.getUint16(entry + ABI.header.cmdId, true);
    if (id === 0) return 'CMD entry has cmd_id 0';
    if (this.#inFlight.has(id)) return `cmd_id ${id} is already in flight`;
    const iovCount = view.getUint32(entry + ABI.req.iovCnt, true);
    const bidiCount = view.getUint32(entry + ABI.req.iovBidiCnt, true);
    const iovTotal = iovCount + bidiCount;
    const iovEnd = ABI.req.iov + ABI.iovec.size * iovTotal;
    if (iovEnd > length)
      return `iov_cnt ${iovCount} + iov_bidi_cnt ${bidiCount} iovecs do not fit a ${length}-byte entry`;
    const cdbOff = readU64(view, entry + ABI.req.cdbOff);
    const cdbStart = cdbOff - entry;
    if (cdbStart < iovEnd || cdbStart >= length) return `cdb_off ${cdbOff} is outside the entry's CDB area`;
    const opcode = this.#bytes[cdbOff]!;
    if (opcode === 0x7f && cdbStart + 8 > length) return 'variable-length CDB header runs past the entry';
    const cdbLength = scsiCommandSize(opcode, opcode === 0x7f ? this.#bytes[cdbOff + 7]! : 0);
    if (cdbStart + cdbLength > length) return `${cdbLength}-byte CDB runs past the entry`;
    const cdb = this.#bytes.slice(cdbOff, cdbOff + cdbLength);
    const mainIov: number[] = new Array(iovCount * 2);
    const bidiIov: number[] = new Array(bidiCount * 2);
    for (let i = 0; i < iovTotal; i++) {
      const at = entry + ABI.req.iov + i * ABI.iovec.size;
      const base = readU64(view, at + ABI.iovec.base);
      const len = readU64(view, at + ABI.iovec.len);
      if (base < this.dataOffset || base + len > this.mapSize) {
        return `iovec ${i} [${base}, +${len}) is outside the data area [${this.dataOffset}, ${this.mapSize})`;
      }
      const target = i < iovCount ? mainIov : bidiIov;
      const index = i < iovCount ? i * 2 : (i - iovCount) * 2;
      target[index] = base;
      target[index + 1] = len;
    }
    return new RingCommand(id, cdb, this.#mapping.buffer, mainIov, bidiIov, at);
  }

  #handleTmr(at: number, length: number): string | undefined {
    const view = this.#view;
    const entry = this.cmdrOffset + at;
    if (length < ABI.tmr.size) return `TMR entry length ${length} is below ${ABI.tmr.size}`;
    const type = view.getUint8(entry + ABI.tmr.tmrType);
    const count = view.getUint32(entry + ABI.tmr.cmdCnt, true);
    if (ABI.tmr.cmdIds + 2 * count > length)
      return `TMR entry names ${count} ids but is only ${length} bytes`;
    const commandIds: number[] = [];
    for (let i = 0; i < count; i++) {
      const id = view.getUint16(entry + ABI.tmr.cmdIds + 2 * i, true);
      commandIds.push(id);
      this.#inFlight.get(id)?.abort(new CommandAbortedError(id, type));
    }
    this.emit('tmr', { type, commandIds });
    return undefined;
  }

  /** Corrupt ring or dead fd: stop intake for good and report once. */
  #fail(error: Error): void {
    if (this.#state !== 'open') return;
    this.#state = 'failed';
    this.#stopPolling();
    this.emit('error', error);
  }

  #stopPolling(): void {
    this.#poller?.close();
    this.#poller = undefined;
  }

  // -------------------------------------------------------------- completion

  /**
   * Mirrors tcmu_handle_completion: decides what the kernel will copy back to
   * the initiator and zeroes Data-In bytes it would otherwise copy stale.
   * Returns the read_len to publish with TCMU_UFLAG_READ_LEN, or 0 for none.
   */
  #finishDataIn(
    command: RingCommand,
    status: number,
    readLen: number | undefined,
    hadDataIn: boolean,
  ): number {
    const capacity = command.dataInLength;
    const declared = readLen !== undefined || hadDataIn || command.dataInWritten > 0 || command.dataInExposed;
    if (!declared || capacity === 0) return 0;
    const produced = readLen ?? (command.dataInExposed ? capacity : command.dataInWritten);
    // The kernel honours read_len only for DMA_FROM_DEVICE and only when non-zero.
    if (this.flags.readLen && !command.bidirectional && produced > 0) return produced;
    // Without a valid read_len, CHECK CONDITION copies nothing; anything else copies the whole buffer.
    if (status !== SAM_STATUS_CHECK_CONDITION || command.bidirectional)
      command.zeroDataIn(produced, capacity);
    return 0;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      if (this.#state === 'closed') return;
      this.#flush();
      if (this.#inFlight.size === 0 && this.#drainWaiters.length > 0) {
        for (const wake of this.#drainWaiters.splice(0)) wake();
      }
      this.#fetch();
    });
  }

  /** Writes pending responses into slots, then one release-store of cmd_tail and one kick. */
  #flush(): void {
    const before = this.#tail;
    const pending = this.#pending;
    this.#pending = [];
    if (this.flags.ooo) {
      for (const completion of pending) {
        this.#releaseSkippable();
        // The kernel reaps in ring order and looks the command up by the id it
        // finds at the tail: answer in the oldest unreaped CMD slot.
        const slot = this.#slots[this.#slotHead++]!;
        if (slot.command !== completion.command) this.#overtakenSlots = true;
        this.#writeResponse(slot.offset, completion);
        this.#tail = (slot.offset + slot.length) % this.cmdrSize;
      }
    } else {
      for (const completion of pending) (completion.command as CommandWithCompletion).completion = completion;
      while (this.#slotHead < this.#slots.length) {
        const slot = this.#slots[this.#slotHead]!;
        const done = slot.command && (slot.command as CommandWithCompletion).completion;
        if (slot.command && !done) break;
        if (done) this.#writeResponse(slot.offset, done);
        this.#slotHead++;
        this.#tail = (slot.offset + slot.length) % this.cmdrSize;
      }
    }
    this.#releaseSkippable();
    if (this.#slotHead > 1024 && this.#slotHead * 2 > this.#slots.length) {
      this.#slots.splice(0, this.#slotHead);
      this.#slotHead = 0;
    }
    if (this.#tail === before) return;
    this.#mapping.storeRelease(ABI.mailbox.cmdTail, this.#tail);
    try {
      callNative(() => loadAddon().kick(this.#eventFd));
    } catch (error) {
      this.#fail(error as Error);
    }
  }

  /** Advances the tail over PAD/TMR/unknown entries at the front. */
  #releaseSkippable(): void {
    while (this.#slotHead < this.#slots.length) {
      const slot = this.#slots[this.#slotHead]!;
      if (slot.command) return;
      this.#slotHead++;
      this.#tail = (slot.offset + slot.length) % this.cmdrSize;
    }
  }

  #writeResponse(slotOffset: number, completion: Completion): void {
    const entry = this.cmdrOffset + slotOffset;
    const view = this.#view;
    view.setUint16(entry + ABI.header.cmdId, completion.command.id, true);
    view.setUint8(entry + ABI.header.uflags, completion.uflags);
    view.setUint32(entry + ABI.rsp.scsiStatus, completion.status, true); // status + 3 pad bytes
    view.setUint32(entry + ABI.rsp.readLen, completion.readLen, true);
    const senseStart = entry + ABI.rsp.senseBuffer;
    const sense = completion.sense;
    const senseLength = sense ? sense.length : 0;
    if (sense) this.#bytes.set(sense, senseStart);
    // Only CHECK CONDITION forwards sense, but never leave stale iovec bytes there.
    if (completion.status === SAM_STATUS_CHECK_CONDITION || senseLength > 0) {
      this.#bytes.fill(0, senseStart + senseLength, senseStart + ABI.senseBufferSize);
    }
  }
}

type CommandWithCompletion = RingCommand & { completion?: Completion };

function readU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
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
