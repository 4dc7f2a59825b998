import { ftruncateSync } from 'node:fs';
import { ABI, commandEntryBaseSize, roundUp, scsiCommandSize, tmrEntrySize } from '../abi.js';
import { RingError, RingUsageError } from '../errors.js';
import type { FdRingOptions } from '../ring.js';
import { callNative, closeFd, loadAddon, type NativeMapping, type NativePoller } from '../native.js';

/** Mailbox capability presets: the current kernel, a 4.x kernel, a very old one. */
export const KERNEL_FLAGS = {
  current: ABI.mailboxFlags.ooo | ABI.mailboxFlags.readLen | ABI.mailboxFlags.tmr | ABI.mailboxFlags.keepBuf,
  oooOnly: ABI.mailboxFlags.ooo,
  none: 0,
} as const;

export interface SimulatorOptions {
  /** command ring size (multiple of 8). Default 65536 - 128, like cmd_ring_size_mb sizing. */
  cmdrSize?: number;
  /** data area size in bytes (multiple of blockSize). Default 1 MiB. */
  dataSize?: number;
  /** data block size (data_pages_per_blk * PAGE_SIZE). Default 4096. */
  blockSize?: number;
  /** mailbox->flags. Default KERNEL_FLAGS.current. */
  flags?: number;
  /** Initial cmd_head = cmd_tail (multiple of 8), to put the wrap where a test wants it. */
  startOffset?: number;
  /** Mailbox version to advertise (tests of the version check). Default 2. */
  version?: number;
  /**
   * Skip copying Data-In back at completion (results carry an empty dataIn).
   * For benchmarks that measure the consumer, not the simulated kernel.
   */
  discardDataIn?: boolean;
}

export interface SimulatedRequest {
  cdb: Uint8Array;
  /** Data-Out payload (DMA_TO_DEVICE, or the Data-Out half of a BIDI command) */
  dataOut?: Uint8Array;
  /** expected Data-In length (DMA_FROM_DEVICE, or the BIDI Data-In buffer when dataOut is also given) */
  dataInLength?: number;
}

export interface SimulatedResult {
  cmdId: number;
  /** SAM status the initiator sees */
  status: number;
  /** sense bytes (96) for CHECK CONDITION, else empty */
  sense: Uint8Array;
  /** the Data-In bytes the kernel copied back (length = what the initiator receives) */
  dataIn: Uint8Array;
  /** Data-In bytes transferred (dataIn.length, also when the simulator discards data) */
  readLen: number;
  /** true when a TMR had aborted the command (the kernel discards the status then) */
  aborted: boolean;
}

/** The simulated kernel found the ring broken, as target_core_user would ("ring is broken"). */
export class RingBrokenError extends RingError {
  static override readonly brand: string = '@tcmu/ring.RingBrokenError';
  override name = 'RingBrokenError';
}

interface KernelCommand {
  id: number;
  request: SimulatedRequest;
  cdbLength: number;
  dataLength: number;
  bidiLength: number;
  blocks: number[];
  mainBlockCount: number;
  aborted: boolean;
  resolve: (result: SimulatedResult) => void;
  reject: (error: Error) => void;
}

interface QueuedCommand {
  request: SimulatedRequest;
  resolve: (result: SimulatedResult) => void;
  reject: (error: Error) => void;
}

const DMA_BIDI_OR_TO_DEVICE = (r: SimulatedRequest) => r.dataOut !== undefined;

/**
 * Plays the kernel's side of a TCMU ring byte for byte (queue_cmd_ring,
 * queue_tmr_ring, tcmu_handle_completions) on a memfd mapped by the same
 * addon the ring uses, with a socketpair standing in for the UIO fd.
 */
export class KernelSimulator {
  readonly memoryFd: number;
  /** the consumer's end of the event channel (stands in for /dev/uioN) */
  readonly eventFd: number;
  readonly mapSize: number;
  readonly cmdrSize: number;
  readonly cmdrOffset = ABI.mailbox.size;
  readonly dataOffset: number;
  readonly blockSize: number;
  readonly blockCount: number;
  /** the whole map, for tests that poke at raw bytes */
  readonly memory: Uint8Array;
  readonly view: DataView;
  /** kicks (4-byte writes) received from the consumer */
  kicks = 0;
  /** notifications (uio_event_notify) sent to the consumer */
  notifications = 0;

  readonly #mapping: NativeMapping;
  readonly #kernelFd: number;
  #poller: NativePoller | undefined;
  #kernelFdOpen = true;
  #head: number;
  #lastCleaned: number;
  readonly #blockUsed: Uint8Array;
  readonly #commands = new Map<number, KernelCommand>();
  /** Completed with TCMU_UFLAG_KEEP_BUF: id and data blocks held until freeKeptBuffer(). */
  readonly #kept = new Map<number, KernelCommand>();
  readonly #qfull: QueuedCommand[] = [];
  readonly #tmrQueue: Array<{ type: number; ids: number[] }> = [];
  #notifyScheduled = false;
  #broken: RingBrokenError | undefined;
  #blocked = false;
  #closed = false;
  readonly #discardDataIn: boolean;

  constructor(options: SimulatorOptions = {}) {
    const cmdrSize = options.cmdrSize ?? 65536 - ABI.mailbox.size;
    const blockSize = options.blockSize ?? 4096;
    const dataSize = options.dataSize ?? 1 << 20;
    if (cmdrSize % ABI.opAlign !== 0 || cmdrSize < 2 * ABI.cmdEntrySize) {
      throw new RingUsageError(`cmdrSize must be a multiple of 8 of at least ${2 * ABI.cmdEntrySize}`);
    }
    if (blockSize <= 0 || dataSize % blockSize !== 0)
      throw new RingUsageError('dataSize must be a multiple of blockSize');
    const start = options.startOffset ?? 0;
    if (start % ABI.opAlign !== 0 || start >= cmdrSize)
      throw new RingUsageError('startOffset must be an aligned ring offset');
    this.cmdrSize = cmdrSize;
    this.blockSize = blockSize;
    this.blockCount = dataSize / blockSize;
    this.dataOffset = this.cmdrOffset + cmdrSize;
    this.mapSize = this.dataOffset + dataSize;
    this.#blockUsed = new Uint8Array(this.blockCount);
    this.#discardDataIn = options.discardDataIn ?? false;
    const addon = loadAddon();
    this.memoryFd = callNative(() => addon.memfdCreate('tcmu-simulator'));
    ftruncateSync(this.memoryFd, this.mapSize);
    this.#mapping = callNative(() => new addon.Mapping(this.memoryFd, this.mapSize));
    this.memory = new Uint8Array(this.#mapping.buffer);
    this.view = new DataView(this.#mapping.buffer);
    const [kernelFd, userFd] = callNative(() => addon.socketPair());
    this.#kernelFd = kernelFd;
    this.eventFd = userFd;
    const mb = ABI.mailbox;
    this.view.setUint16(mb.version, options.version ?? ABI.mailboxVersion, true);
    this.view.setUint16(mb.flags, options.flags ?? KERNEL_FLAGS.current, true);
    this.view.setUint32(mb.cmdrOff, this.cmdrOffset, true);
    this.view.setUint32(mb.cmdrSize, cmdrSize, true);
    this.view.setUint32(mb.cmdHead, start, true);
    this.view.setUint32(mb.cmdTail, start, true);
    this.#head = start;
    this.#lastCleaned = start;
    this.#poller = callNative(
      () => new addon.Poller(kernelFd, (error, events) => this.#onKick(error, events)),
    );
  }

  /** Options for TcmuRing.open() against this simulator. */
  ringOptions(extra: { maxInFlight?: number } = {}): FdRingOptions {
    return { memoryFd: this.memoryFd, eventFd: this.eventFd, mapSize: this.mapSize, ...extra };
  }

  get flags(): number {
    return this.view.getUint16(ABI.mailbox.flags, true);
  }

  get broken(): RingBrokenError | undefined {
    return this.#broken;
  }

  get head(): number {
    return this.#head;
  }

  /** ids of commands in the ring that the consumer has not completed yet */
  get inRing(): number[] {
    return [...this.#commands.keys()];
  }

  /** ids completed with KEEP_BUF whose buffers were not given back yet */
  get kept(): number[] {
    return [...this.#kept.keys()];
  }

  /**
   * action/free_kept_buf (tcmu_free_kept_buf_store): releases the data blocks and
   * the id of a command completed with KEEP_BUF.
   * @throws RingUsageError when `id` holds no kept buffer (the kernel's -EINVAL)
   */
  freeKeptBuffer(id: number): void {
    const command = this.#kept.get(id);
    if (!command) throw new RingUsageError(`free_kept_buf: cmd_id ${id} is not kept`);
    this.#kept.delete(id);
    this.#freeBlocks(command.blocks);
    this.#runQueues();
  }

  /** Bytes of the data area currently holding `id`'s (kept) data, for tests. */
  dataOf(id: number): Uint8Array {
    const command = this.#commands.get(id) ?? this.#kept.get(id);
    if (!command) throw new RingUsageError(`cmd_id ${id} holds no data blocks`);
    const length = command.bidiLength > 0 ? command.dataLength + command.bidiLength : command.dataLength;
    return this.#gather(this.#iovecs(command.blocks, length), length);
  }

  /** commands held back because the ring or data area was full */
  get queued(): number {
    return this.#qfull.length;
  }

  /** Queues a SCSI command like tcmu_queue_cmd; resolves when the consumer completes it. */
  submit(request: SimulatedRequest): Promise<SimulatedResult> {
    const result = new Promise<SimulatedResult>((resolve, reject) => {
      if (this.#closed) return reject(new RingUsageError('simulator is closed'));
      if (this.#broken) return reject(this.#broken);
      if (this.#blocked) return resolve(statusOnly(0, SAM_STAT_BUSY));
      const queued = { request, resolve, reject };
      if (this.#qfull.length > 0 || !this.#queueCommand(queued)) this.#qfull.push(queued);
    });
    // Tests often close with commands outstanding on purpose; whoever awaits still sees the rejection.
    result.catch(() => {});
    return result;
  }

  /** Emits a TMR entry (queue_tmr_ring) naming `ids` (default: every command in the ring). */
  tmr(type: number = ABI.tmrType.abortTask, ids: number[] = this.inRing): void {
    for (const id of ids) {
      const command = this.#commands.get(id);
      if (command) command.aborted = true;
    }
    if (this.#tmrQueue.length > 0 || !this.#queueTmr(type, ids)) this.#tmrQueue.push({ type, ids });
  }

  /**
   * Publishes raw bytes at cmd_head as if the kernel had written them
   * (for corrupt-ring tests). Advances cmd_head by `advance` (default the byte count).
   */
  injectRaw(bytes: Uint8Array, advance: number = bytes.length): void {
    const at = this.cmdrOffset + this.#head;
    this.memory.set(bytes.subarray(0, Math.min(bytes.length, this.cmdrSize - this.#head)), at);
    this.#publishHead((this.#head + advance) % this.cmdrSize);
  }

  /** Writes cmd_head directly (corrupt-ring tests). */
  setHead(value: number): void {
    this.#mapping.storeRelease(ABI.mailbox.cmdHead, value >>> 0);
    this.#notify();
  }

  /**
   * action/block_dev (tcmu_block_dev / tcmu_unblock_dev): while blocked, new commands are
   * answered BUSY at once (queue_cmd_ring's TCM_LUN_BUSY) and waiting ones too.
   */
  blockDevice(blocked: boolean): void {
    this.#blocked = blocked;
    if (blocked) for (const queued of this.#qfull.splice(0)) queued.resolve(statusOnly(0, SAM_STAT_BUSY));
  }

  /**
   * action/reset_ring (tcmu_reset_ring): every command in the ring completes, with BUSY
   * (level 1: the initiator retries) or CHECK CONDITION, NOT READY, LOGICAL UNIT
   * COMMUNICATION FAILURE 08/00 (level 2); kept buffers are freed; cmd_head, cmd_tail and
   * the kernel's cleaned offset go back to 0 and a broken ring works again. The ring's
   * bytes and the mailbox version and flags stay as they are.
   */
  resetRing(level: 1 | 2): void {
    for (const command of this.#commands.values()) {
      this.#freeBlocks(command.blocks);
      command.resolve(
        level === 1 ? statusOnly(command.id, SAM_STAT_BUSY) : notReadyCommunicationFailure(command.id),
      );
    }
    this.#commands.clear();
    for (const command of this.#kept.values()) this.#freeBlocks(command.blocks);
    this.#kept.clear();
    this.#tmrQueue.length = 0;
    this.#head = 0;
    this.#lastCleaned = 0;
    this.#mapping.storeRelease(ABI.mailbox.cmdHead, 0);
    this.#mapping.storeRelease(ABI.mailbox.cmdTail, 0);
    this.#broken = undefined;
    this.#runQueues();
  }

  /** Closes the kernel's end of the event channel, as when the UIO device goes away. */
  disconnect(): void {
    if (this.#kernelFdOpen) {
      this.#poller?.close();
      this.#poller = undefined;
      closeFd(this.#kernelFd);
      this.#kernelFdOpen = false;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.disconnect();
    const error = new RingUsageError('simulator closed with the command outstanding');
    for (const command of this.#commands.values()) command.reject(error);
    for (const queued of this.#qfull.splice(0)) queued.reject(error);
    this.#commands.clear();
    this.#kept.clear();
    this.#mapping.unmap();
    closeFd(this.eventFd);
    closeFd(this.memoryFd);
  }

  // --------------------------------------------------------- queue_cmd_ring

  /** Returns false when the command must wait for ring or data space. */
  #queueCommand(queued: QueuedCommand): boolean {
    const { request } = queued;
    const bidi = request.dataOut !== undefined && (request.dataInLength ?? 0) > 0;
    const dataLength = request.dataOut ? request.dataOut.length : (request.dataInLength ?? 0);
    const bidiLength = bidi ? request.dataInLength! : 0;
    const mainBlocks = Math.ceil(dataLength / this.blockSize);
    const bidiBlocks = Math.ceil(bidiLength / this.blockSize);
    const opcode = request.cdb[0] ?? 0;
    const cdbLength = scsiCommandSize(opcode, request.cdb[7] ?? 0);
    if (request.cdb.length < cdbLength) {
      queued.reject(new RingUsageError(`CDB opcode 0x${opcode.toString(16)} needs ${cdbLength} bytes`));
      return true;
    }
    if (mainBlocks + bidiBlocks > this.blockCount) {
      // queue_cmd_ring: "Request of size %zu is too big for %zu data area"
      queued.resolve(invalidFieldInCdb(0));
      return true;
    }
    const blocks = this.#allocateBlocks(mainBlocks + bidiBlocks);
    if (!blocks) return false;
    const mainIov = this.#iovecs(blocks.slice(0, mainBlocks), dataLength);
    const bidiIov = this.#iovecs(blocks.slice(mainBlocks), bidiLength);
    const iovCount = (mainIov.length + bidiIov.length) / 2;
    const baseSize = commandEntryBaseSize(iovCount);
    const entrySize = baseSize + roundUp(cdbLength, ABI.opAlign);
    if (entrySize > this.cmdrSize / 2) {
      this.#freeBlocks(blocks);
      queued.resolve(invalidFieldInCdb(0));
      return true;
    }
    if (!this.#spaceAvailable(entrySize)) {
      this.#freeBlocks(blocks);
      return false;
    }
    let id = 1;
    while (this.#commands.has(id) || this.#kept.has(id)) id++; // xa_alloc: lowest free id in 1..0xffff
    if (id > ABI.maxCmdId) {
      this.#freeBlocks(blocks);
      return false;
    }
    const head = this.#insertPadding(entrySize);
    const entry = this.cmdrOffset + head;
    const view = this.view;
    this.memory.fill(0, entry, entry + entrySize);
    view.setUint32(entry + ABI.header.lenOp, entrySize | ABI.op.cmd, true);
    view.setUint16(entry + ABI.header.cmdId, id, true);
    view.setUint32(entry + ABI.req.iovCnt, mainIov.length / 2, true);
    view.setUint32(entry + ABI.req.iovBidiCnt, bidiIov.length / 2, true);
    const all = [...mainIov, ...bidiIov];
    for (let i = 0; i < all.length; i += 2) {
      const at = entry + ABI.req.iov + (i / 2) * ABI.iovec.size;
      writeU64(view, at + ABI.iovec.base, all[i]!);
      writeU64(view, at + ABI.iovec.len, all[i + 1]!);
    }
    const cdbOff = entry + baseSize;
    writeU64(view, entry + ABI.req.cdbOff, cdbOff);
    this.memory.set(request.cdb.subarray(0, cdbLength), cdbOff);
    if (request.dataOut) this.#scatter(mainIov, request.dataOut);
    this.#commands.set(id, {
      id,
      request,
      cdbLength,
      dataLength,
      bidiLength,
      blocks,
      mainBlockCount: mainBlocks,
      aborted: false,
      resolve: queued.resolve,
      reject: queued.reject,
    });
    this.#publishHead((head + entrySize) % this.cmdrSize);
    return true;
  }

  #queueTmr(type: number, ids: number[]): boolean {
    const size = tmrEntrySize(ids.length);
    if (!this.#spaceAvailable(size)) return false;
    const head = this.#insertPadding(size);
    const entry = this.cmdrOffset + head;
    this.memory.fill(0, entry, entry + size);
    this.view.setUint32(entry + ABI.header.lenOp, size | ABI.op.tmr, true);
    this.view.setUint8(entry + ABI.tmr.tmrType, type);
    this.view.setUint32(entry + ABI.tmr.cmdCnt, ids.length, true);
    ids.forEach((id, i) => {
      this.view.setUint16(entry + ABI.tmr.cmdIds + 2 * i, id, true);
    });
    this.#publishHead((head + size) % this.cmdrSize);
    return true;
  }

  /** is_ring_space_avail: room for the entry (plus a PAD at the wrap), keeping 1 byte free. */
  #spaceAvailable(size: number): boolean {
    const toEnd = this.cmdrSize - this.#head;
    const needed = toEnd >= size ? size : size + toEnd;
    const used = (this.#head - this.#lastCleaned + this.cmdrSize) % this.cmdrSize;
    return this.cmdrSize - used - 1 >= needed;
  }

  /** ring_insert_padding: a PAD covering the rest of the ring when the entry does not fit. */
  #insertPadding(size: number): number {
    const toEnd = this.cmdrSize - this.#head;
    if (toEnd < size) {
      const entry = this.cmdrOffset + this.#head;
      this.view.setUint32(entry + ABI.header.lenOp, toEnd | ABI.op.pad, true);
      this.view.setUint16(entry + ABI.header.cmdId, 0, true);
      this.view.setUint8(entry + ABI.header.kflags, 0);
      this.view.setUint8(entry + ABI.header.uflags, 0);
      this.#head = 0;
      this.#mapping.storeRelease(ABI.mailbox.cmdHead, 0);
    }
    return this.#head;
  }

  #publishHead(head: number): void {
    this.#head = head;
    this.#mapping.storeRelease(ABI.mailbox.cmdHead, head);
    this.#notify();
  }

  /** uio_event_notify, coalesced per tick like a plugged device. */
  #notify(): void {
    if (this.#notifyScheduled) return;
    this.#notifyScheduled = true;
    queueMicrotask(() => {
      this.#notifyScheduled = false;
      if (this.#closed) return;
      if (!this.#kernelFdOpen) return;
      this.notifications++;
      callNative(() => loadAddon().kick(this.#kernelFd));
    });
  }

  /** find_first_zero_bit, block by block. */
  #allocateBlocks(count: number): number[] | undefined {
    const blocks: number[] = [];
    for (let dbi = 0; dbi < this.blockCount && blocks.length < count; dbi++) {
      if (!this.#blockUsed[dbi]) blocks.push(dbi);
    }
    if (blocks.length < count) return undefined;
    for (const dbi of blocks) this.#blockUsed[dbi] = 1;
    return blocks;
  }

  #freeBlocks(blocks: number[]): void {
    for (const dbi of blocks) this.#blockUsed[dbi] = 0;
  }

  /** new_block_to_iov: adjacent blocks merge into one iovec; the last one may be partial. */
  #iovecs(blocks: number[], length: number): number[] {
    const iov: number[] = [];
    let remaining = length;
    let previous = -2;
    for (const dbi of blocks) {
      const part = Math.min(remaining, this.blockSize);
      if (dbi !== previous + 1) iov.push(this.dataOffset + dbi * this.blockSize, part);
      else iov[iov.length - 1]! += part;
      remaining -= part;
      previous = dbi;
    }
    return iov;
  }

  #scatter(iov: number[], source: Uint8Array): void {
    let at = 0;
    for (let i = 0; i < iov.length; i += 2) {
      this.memory.set(source.subarray(at, at + iov[i + 1]!), iov[i]!);
      at += iov[i + 1]!;
    }
  }

  #gather(iov: number[], length: number): Uint8Array {
    const out = new Uint8Array(length);
    let at = 0;
    for (let i = 0; i < iov.length && at < length; i += 2) {
      const count = Math.min(iov[i + 1]!, length - at);
      out.set(this.memory.subarray(iov[i]!, iov[i]! + count), at);
      at += count;
    }
    return out;
  }

  // ------------------------------------------------ tcmu_handle_completions

  #onKick(error: Error | null, events: number): void {
    if (error) {
      this.#markBroken(`event channel failed: ${error.message}`);
      return;
    }
    this.kicks += events;
    this.#handleCompletions();
  }

  #handleCompletions(): void {
    if (this.#broken || this.#closed) return;
    const tail = this.#mapping.loadAcquire(ABI.mailbox.cmdTail);
    if (tail >= this.cmdrSize || tail % ABI.opAlign !== 0) {
      this.#markBroken(`cmd_tail ${tail} is not an aligned ring offset, ring is broken`);
      return;
    }
    let freed = false;
    while (this.#lastCleaned !== tail) {
      const entry = this.cmdrOffset + this.#lastCleaned;
      const lenOp = this.view.getUint32(entry + ABI.header.lenOp, true);
      const length = lenOp & ~ABI.opMask;
      const op = lenOp & ABI.opMask;
      if (length === 0) {
        this.#markBroken(`zero-length entry at ${this.#lastCleaned}, ring is broken`);
        return;
      }
      freed = true;
      // PAD and TMR carry no command. Ops this kernel does not know cannot be
      // its own entries; they only come from tests injecting them, so skip too.
      if (op !== ABI.op.cmd) {
        this.#lastCleaned = (this.#lastCleaned + length) % this.cmdrSize;
        continue;
      }
      const id = this.view.getUint16(entry + ABI.header.cmdId, true);
      const command = this.#commands.get(id);
      if (!command) {
        this.#markBroken(
          this.#kept.has(id)
            ? `cmd_id ${id} already completed with KEEP_BUF, ring is broken`
            : `cmd_id ${id} not found, ring is broken`,
        );
        return;
      }
      this.#commands.delete(id);
      this.#complete(command, entry);
      this.#lastCleaned = (this.#lastCleaned + length) % this.cmdrSize;
    }
    if (freed) this.#runQueues();
  }

  /** tcmu_handle_completion */
  #complete(command: KernelCommand, entry: number): void {
    const view = this.view;
    const uflags = view.getUint8(entry + ABI.header.uflags);
    let status = view.getUint8(entry + ABI.rsp.scsiStatus);
    const fromDevice = !DMA_BIDI_OR_TO_DEVICE(command.request) && command.dataLength > 0;
    const bidi = command.bidiLength > 0;
    let sense: Uint8Array = new Uint8Array(0);
    let dataIn: Uint8Array = new Uint8Array(0);
    let transferred = 0;
    if (uflags & ABI.uflags.unknownOp) {
      status = 0x02;
    } else {
      let readLen = command.dataLength;
      let readLenValid = false;
      const rspReadLen = view.getUint32(entry + ABI.rsp.readLen, true);
      if (fromDevice && this.flags & ABI.mailboxFlags.readLen && uflags & ABI.uflags.readLen && rspReadLen) {
        readLenValid = true;
        readLen = Math.min(readLen, rspReadLen);
      }
      let copy = true;
      if (status === 0x02) {
        sense = this.memory.slice(
          entry + ABI.rsp.senseBuffer,
          entry + ABI.rsp.senseBuffer + ABI.senseBufferSize,
        );
        copy = readLenValid;
      }
      if (copy) {
        // gather_data_area: BIDI copies up to data_length of the BIDI buffer.
        transferred = bidi ? Math.min(command.bidiLength, command.dataLength) : fromDevice ? readLen : 0;
        if (transferred > 0 && !this.#discardDataIn) {
          const blocks = bidi ? command.blocks.slice(command.mainBlockCount) : command.blocks;
          const iov = this.#iovecs(blocks, bidi ? command.bidiLength : command.dataLength);
          dataIn = this.#gather(iov, transferred);
        }
      }
    }
    // KEEP_BUF: the data blocks (and the id) stay with the command until free_kept_buf.
    if (uflags & ABI.uflags.keepBuf && this.flags & ABI.mailboxFlags.keepBuf)
      this.#kept.set(command.id, command);
    else this.#freeBlocks(command.blocks);
    command.resolve({
      cmdId: command.id,
      status,
      sense,
      dataIn,
      readLen: transferred,
      aborted: command.aborted,
    });
  }

  /** tcmu_run_tmr_queue then run_qfull_queue, in the kernel's order. */
  #runQueues(): void {
    while (this.#tmrQueue.length > 0) {
      const next = this.#tmrQueue[0]!;
      if (!this.#queueTmr(next.type, next.ids)) return;
      this.#tmrQueue.shift();
    }
    while (this.#qfull.length > 0) {
      if (!this.#queueCommand(this.#qfull[0]!)) return;
      this.#qfull.shift();
    }
  }

  #markBroken(message: string): void {
    if (this.#broken) return;
    this.#broken = new RingBrokenError(message);
    for (const command of this.#commands.values()) command.reject(this.#broken);
    this.#commands.clear();
    for (const queued of this.#qfull.splice(0)) queued.reject(this.#broken);
  }
}

function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

const SAM_STAT_BUSY = 0x08;

function statusOnly(cmdId: number, status: number): SimulatedResult {
  return { cmdId, status, sense: new Uint8Array(0), dataIn: new Uint8Array(0), readLen: 0, aborted: false };
}

/** CHECK CONDITION with fixed-format sense: what the core sends for its own failures. */
function checkCondition(cmdId: number, senseKey: number, asc: number): SimulatedResult {
  const sense = new Uint8Array(ABI.senseBufferSize);
  sense[0] = 0x70;
  sense[2] = senseKey;
  sense[7] = 0x0a;
  sense[12] = asc;
  return { cmdId, status: 0x02, sense, dataIn: new Uint8Array(0), readLen: 0, aborted: false };
}

/** TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE: NOT READY, 08/00. */
const notReadyCommunicationFailure = (cmdId: number) => checkCondition(cmdId, 0x02, 0x08);
/** TCM_INVALID_CDB_FIELD: ILLEGAL REQUEST, 24/00. */
const invalidFieldInCdb = (cmdId: number) => checkCondition(cmdId, 0x05, 0x24);
