import { RingClosedError, RingUsageError } from './errors.js';

/**
 * One SCSI command fetched from the ring.
 *
 * Ownership: the CDB and the iovec list were copied out of the ring at fetch
 * time and stay valid forever. The data buffers (`dataOut()`,
 * `dataOutSegments()`, `dataInSegments()`) are views of the shared data area:
 * valid from the 'command' event until the command is completed (the kernel
 * reuses the blocks afterwards) and detached to length 0 when the ring closes.
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
  /** copy of the CDB (scsi_command_size bytes) */
  readonly cdb: Uint8Array;
  /** size of the main data buffer (Data-Out of a write or BIDI command) */
  readonly dataOutLength: number;
  /** size of the Data-In buffer (BIDI buffer if any, else the main buffer) */
  readonly dataInLength: number;
  /** true when the kernel passed separate Data-In iovecs (iov_bidi_cnt > 0) */
  readonly bidirectional: boolean;

  /** @internal ring offset of the entry this command arrived in */
  readonly slotOffset: number;
  /** @internal bytes of Data-In the handler has written, high-water mark */
  dataInWritten = 0;
  /** @internal the handler asked for raw Data-In segments (treated as written) */
  dataInExposed = false;
  /** @internal */
  state: 'active' | 'completed' | 'abandoned' = 'active';

  readonly #buffer: ArrayBuffer;
  /** [base, length] pairs of the main buffer (absolute map offsets) */
  readonly #mainIov: number[];
  /** [base, length] pairs of the BIDI Data-In buffer */
  readonly #bidiIov: number[];
  #abort: AbortController | undefined;
  #gathered: Uint8Array | undefined;

  /** @internal created by TcmuRing while walking the ring */
  constructor(
    id: number,
    cdb: Uint8Array,
    buffer: ArrayBuffer,
    mainIov: number[],
    bidiIov: number[],
    slotOffset: number,
  ) {
    this.id = id;
    this.cdb = cdb;
    this.#buffer = buffer;
    this.#mainIov = mainIov;
    this.#bidiIov = bidiIov;
    this.slotOffset = slotOffset;
    this.bidirectional = bidiIov.length > 0;
    this.dataOutLength = sumLengths(mainIov);
    this.dataInLength = this.bidirectional ? sumLengths(bidiIov) : this.dataOutLength;
  }

  /**
   * Aborted when the kernel reports a TMR naming this command (reason:
   * CommandAbortedError) or when close() abandons it (reason: RingClosedError).
   * An aborted command must still be completed; the kernel discards its status.
   */
  get signal(): AbortSignal {
    this.#abort ??= new AbortController();
    return this.#abort.signal;
  }

  /** @internal */
  abort(reason: Error): void {
    this.#abort ??= new AbortController();
    if (!this.#abort.signal.aborted) this.#abort.abort(reason);
  }

  /**
   * The Data-Out payload: a zero-copy view when the kernel used one iovec,
   * a gathered copy otherwise. Valid until completion.
   */
  dataOut(): Uint8Array {
    this.#assertActive();
    const iov = this.#mainIov;
    if (iov.length === 2) return new Uint8Array(this.#buffer, iov[0]!, iov[1]!);
    if (iov.length === 0) return new Uint8Array(0);
    if (!this.#gathered) {
      const out = new Uint8Array(this.dataOutLength);
      let at = 0;
      for (let i = 0; i < iov.length; i += 2) {
        out.set(new Uint8Array(this.#buffer, iov[i]!, iov[i + 1]!), at);
        at += iov[i + 1]!;
      }
      this.#gathered = out;
    }
    return this.#gathered;
  }

  /** Zero-copy views of the Data-Out iovecs, in order. Valid until completion. */
  dataOutSegments(): Uint8Array[] {
    this.#assertActive();
    return views(this.#buffer, this.#mainIov);
  }

  /**
   * Zero-copy views of the Data-In iovecs, for filling in place (e.g. preadv
   * straight into the ring). Using them counts as having produced the whole
   * buffer unless complete() is given an explicit `readLen`.
   */
  dataInSegments(): Uint8Array[] {
    this.#assertActive();
    this.dataInExposed = true;
    return views(this.#buffer, this.#dataInIov());
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
    const written = scatter(this.#buffer, this.#dataInIov(), source, offset);
    if (offset + written > this.dataInWritten) this.dataInWritten = offset + written;
    return written;
  }

  /** @internal zeroes Data-In bytes [from, to) so stale data cannot reach the initiator */
  zeroDataIn(from: number, to: number): void {
    const iov = this.#dataInIov();
    let position = 0;
    for (let i = 0; i < iov.length && position < to; i += 2) {
      const base = iov[i]!;
      const length = iov[i + 1]!;
      const start = Math.max(from, position);
      const end = Math.min(to, position + length);
      if (start < end) new Uint8Array(this.#buffer, base + (start - position), end - start).fill(0);
      position += length;
    }
  }

  #dataInIov(): number[] {
    return this.bidirectional ? this.#bidiIov : this.#mainIov;
  }

  #assertActive(): void {
    if (this.state === 'completed') throw new RingUsageError(`command ${this.id} is already completed`);
    if (this.state === 'abandoned')
      throw new RingClosedError(`command ${this.id} was abandoned when the ring closed`);
  }
}

function sumLengths(iov: number[]): number {
  let total = 0;
  for (let i = 1; i < iov.length; i += 2) total += iov[i]!;
  return total;
}

function views(buffer: ArrayBuffer, iov: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < iov.length; i += 2) out.push(new Uint8Array(buffer, iov[i]!, iov[i + 1]!));
  return out;
}

/** Copies `source` into the iovec list at logical byte `offset`; returns bytes copied. */
export function scatter(buffer: ArrayBuffer, iov: number[], source: Uint8Array, offset: number): number {
  let skip = offset;
  let copied = 0;
  for (let i = 0; i < iov.length && copied < source.length; i += 2) {
    const length = iov[i + 1]!;
    if (skip >= length) {
      skip -= length;
      continue;
    }
    const count = Math.min(length - skip, source.length - copied);
    new Uint8Array(buffer, iov[i]! + skip, count).set(source.subarray(copied, copied + count));
    copied += count;
    skip = 0;
  }
  return copied;
}
