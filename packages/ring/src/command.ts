import { RingClosedError, RingUsageError } from './errors.js';

/** What a command reads from the ring that delivered it (TcmuRing implements it). */
export interface CommandSource {
  /** The whole map (data views are made over it). */
  readonly buffer: ArrayBuffer;
  readonly device: string;
  readonly nexus: string;
  /** performance.now() of the batch each command id arrived in. */
  readonly receivedAt: Float64Array;
}

const EMPTY = new Uint8Array(0);
/** RingCommand.#flags bits */
const EXPOSED_OUT = 1; // a view of the main buffer was handed out as Data-Out
const EXPOSED_IN = 2; // a view of the Data-In buffer was handed out

/**
 * One SCSI command fetched from the ring: the one object that carries it from
 * the ring entry to its completion (@tcmu/device hands it to @tcmu/scsi as the
 * request itself).
 *
 * Lifetimes: `cdb` and the data views are valid until the command completes.
 * The CDB lives in memory the ring reuses for the next command with the same
 * id (copy it to keep it); the data views are the kernel's data area, which it
 * reuses once the command is reaped, and they read as length 0 once the ring
 * unmaps. Handing out a view marks the command's ring memory as exposed: such a
 * command is never completed behind its handler's back (see TcmuRing.abortNow),
 * and a closed ring stays mapped until it is completed.
 *
 * Buffers: the main buffer (`iov_cnt` iovecs) is the Data-Out buffer of a
 * write and the Data-In buffer of a read; the transport cannot tell which,
 * because direction is a property of the SCSI opcode. For BIDI commands
 * (`iov_bidi_cnt` > 0) the main buffer is Data-Out and the BIDI iovecs are
 * Data-In. So `dataOutLength` is the main buffer's size, and `dataInLength`
 * is the BIDI buffer's size for BIDI commands, the main buffer's otherwise.
 */
export class RingCommand {
  /** kernel cmd_id (1..65535); unique among commands in flight */
  readonly id: number;
  /** the CDB (scsi_command_size bytes) */
  readonly cdb: Uint8Array;
  /**
   * @internal 'aborted': answered by TcmuRing.abortNow while its handler may
   * still run; 'kept': the same, with its ring memory kept (KEEP_BUF) until it ends
   */
  state: 'active' | 'completed' | 'aborted' | 'kept' | 'abandoned' = 'active';
  /** @internal bytes of Data-In written by writeDataIn, high-water mark */
  dataInWritten = 0;

  readonly #source: CommandSource;
  /** the first main iovec (absolute map offset, length) */
  readonly #base: number;
  readonly #length: number;
  /** [base, length] pairs of the main buffer when it has several iovecs */
  readonly #iov: number[] | undefined;
  /** [base, length] pairs of the BIDI Data-In buffer */
  readonly #bidi: number[] | undefined;
  #flags = 0;
  /** the AbortController once `signal` was read, else the abort reason (if aborted) */
  #abort: AbortController | Error | undefined;

  /** @internal created by TcmuRing from the engine's records */
  constructor(
    source: CommandSource,
    id: number,
    cdb: Uint8Array,
    base: number,
    length: number,
    iov: number[] | undefined,
    bidi: number[] | undefined,
  ) {
    this.#source = source;
    this.id = id;
    this.cdb = cdb;
    this.#base = base;
    this.#length = length;
    this.#iov = iov;
    this.#bidi = bidi;
  }

  /** size of the main data buffer (Data-Out of a write or BIDI command) */
  get dataOutLength(): number {
    return this.#iov === undefined ? this.#length : sumLengths(this.#iov);
  }

  /** size of the Data-In buffer (BIDI buffer if any, else the main buffer) */
  get dataInLength(): number {
    if (this.#bidi !== undefined) return sumLengths(this.#bidi);
    return this.#iov === undefined ? this.#length : sumLengths(this.#iov);
  }

  /** cdb[0] */
  get opcode(): number {
    return this.cdb[0]!;
  }

  /** true when the kernel passed separate Data-In iovecs (iov_bidi_cnt > 0) */
  get bidirectional(): boolean {
    return this.#bidi !== undefined;
  }

  /** The TCMU device's name (TcmuRingOptions.device). */
  get device(): string {
    return this.#source.device;
  }

  /** The I_T nexus commands of this ring belong to (TcmuRingOptions.nexus; the ring carries none). */
  get nexus(): string {
    return this.#source.nexus;
  }

  /** performance.now() when the batch holding this command was fetched. */
  get receivedAt(): number {
    return this.#source.receivedAt[this.id]!;
  }

  /**
   * Aborted when the kernel reports a TMR naming this command (reason:
   * CommandAbortedError) or when close() abandons it (reason: RingClosedError).
   * An aborted command must still be completed; the kernel discards its status.
   * Made on first use: most commands never need one.
   */
  get signal(): AbortSignal {
    let abort = this.#abort;
    if (!(abort instanceof AbortController)) {
      const reason = abort;
      abort = new AbortController();
      if (reason !== undefined) abort.abort(reason);
      this.#abort = abort;
    }
    return abort.signal;
  }

  /** Whether the command was aborted, without building `signal`. */
  get aborted(): boolean {
    const abort = this.#abort;
    // undefined first: `instanceof` on it still looks up AbortController[Symbol.hasInstance]
    if (abort === undefined) return false;
    return abort instanceof AbortController ? abort.signal.aborted : true;
  }

  /** @internal */
  abort(reason: Error): void {
    const abort = this.#abort;
    if (abort instanceof AbortController) {
      if (!abort.signal.aborted) abort.abort(reason);
    } else if (abort === undefined) {
      this.#abort = reason;
    }
  }

  /** @internal whether a view of this command's ring memory was handed out */
  get memoryExposed(): boolean {
    return this.#flags !== 0;
  }

  /** @internal whether a view of the Data-In buffer was handed out (counts as produced) */
  get dataInExposed(): boolean {
    return (this.#flags & EXPOSED_IN) !== 0;
  }

  /**
   * The Data-Out payload (the main buffer; for BIDI commands the Data-Out
   * half): a view of the ring when the kernel used one iovec, a gathered copy
   * otherwise (see dataOutSegments). Empty when there is none.
   */
  get dataOut(): Uint8Array {
    this.#assertActive();
    if (this.#iov === undefined) {
      if (this.#length === 0) return EMPTY;
      this.#flags |= EXPOSED_OUT;
      return new Uint8Array(this.#source.buffer, this.#base, this.#length);
    }
    const out = new Uint8Array(this.dataOutLength);
    scatterOrGather(this.#source.buffer, this.#iov, out, 0, false);
    return out;
  }

  /**
   * Zero-copy views of the Data-Out iovecs in order, when there are several;
   * undefined for one iovec (then `dataOut` is already a view).
   */
  get dataOutSegments(): readonly Uint8Array[] | undefined {
    this.#assertActive();
    if (this.#iov === undefined) return undefined;
    this.#flags |= EXPOSED_OUT;
    return views(this.#source.buffer, this.#iov);
  }

  /**
   * The Data-In memory to fill in place (e.g. preadv straight into the ring):
   * one view for one iovec, the views in order otherwise. Handing it out counts
   * as having produced the whole buffer unless complete() gets a `readLen`.
   */
  get dataInBuffer(): Uint8Array | readonly Uint8Array[] {
    this.#assertActive();
    this.#flags |= EXPOSED_IN;
    const iov = this.#dataInIov();
    if (iov === undefined) return new Uint8Array(this.#source.buffer, this.#base, this.#length);
    return views(this.#source.buffer, iov);
  }

  /** Whether `view` is memory of this ring (e.g. a dataInBuffer view): nothing to copy. */
  isRingMemory(view: Uint8Array): boolean {
    return view.buffer === this.#source.buffer;
  }

  /**
   * Scatters `source` into the Data-In buffer starting at byte `offset`
   * (correct across partial iovecs). Bytes beyond the buffer are not written.
   * @returns bytes written
   */
  writeDataIn(source: Uint8Array, offset = 0): number {
    this.#assertActive();
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.dataInLength) {
      throw new RingUsageError(
        `writeDataIn offset ${offset} is outside the ${this.dataInLength}-byte Data-In buffer`,
      );
    }
    const count = Math.min(source.length, this.dataInLength - offset);
    const iov = this.#dataInIov();
    if (iov === undefined) {
      new Uint8Array(this.#source.buffer, this.#base + offset, count).set(
        count === source.length ? source : source.subarray(0, count),
      );
    } else {
      scatterOrGather(this.#source.buffer, iov, source.subarray(0, count), offset, true);
    }
    if (offset + count > this.dataInWritten) this.dataInWritten = offset + count;
    return count;
  }

  /** @internal zeroes Data-In bytes [from, to) so stale data cannot reach the initiator */
  zeroDataIn(from: number, to: number): void {
    const iov = this.#dataInIov();
    if (iov === undefined) {
      if (from < to) new Uint8Array(this.#source.buffer, this.#base + from, to - from).fill(0);
      return;
    }
    let position = 0;
    for (let i = 0; i < iov.length && position < to; i += 2) {
      const base = iov[i]!;
      const length = iov[i + 1]!;
      const start = Math.max(from, position);
      const end = Math.min(to, position + length);
      if (start < end) new Uint8Array(this.#source.buffer, base + (start - position), end - start).fill(0);
      position += length;
    }
  }

  /** The Data-In iovecs as pairs, or undefined when it is the single main iovec. */
  #dataInIov(): number[] | undefined {
    return this.#bidi ?? this.#iov;
  }

  #assertActive(): void {
    if (this.state === 'active' || this.state === 'kept') return;
    if (this.state === 'abandoned')
      throw new RingClosedError(`command ${this.id} was abandoned when the ring closed`);
    throw new RingUsageError(`command ${this.id} is already completed`);
  }
}

/** @internal total length of [base, length] pairs */
export function sumLengths(iov: readonly number[]): number {
  let total = 0;
  for (let i = 1; i < iov.length; i += 2) total += iov[i]!;
  return total;
}

/** @internal views of [base, length] pairs of `buffer` */
export function views(buffer: ArrayBufferLike, iov: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < iov.length; i += 2) out.push(new Uint8Array(buffer, iov[i]!, iov[i + 1]!));
  return out;
}

/** Copies between `bytes` and the iovec list at logical `offset` (scatter: into the iovecs). */
function scatterOrGather(
  buffer: ArrayBuffer,
  iov: number[],
  bytes: Uint8Array,
  offset: number,
  scatter: boolean,
) {
  let skip = offset;
  let copied = 0;
  for (let i = 0; i < iov.length && copied < bytes.length; i += 2) {
    const length = iov[i + 1]!;
    if (skip >= length) {
      skip -= length;
      continue;
    }
    const count = Math.min(length - skip, bytes.length - copied);
    const ring = new Uint8Array(buffer, iov[i]! + skip, count);
    if (scatter) ring.set(bytes.subarray(copied, copied + count));
    else bytes.set(ring, copied);
    copied += count;
    skip = 0;
  }
}
