import {
  type BlockBackend,
  type LbaExtent,
  BackendIoError,
  type ProvisioningUsage,
  type WriteOptions,
} from '../core/backend.js';
import { ScsiError } from '../core/scsi-error.js';

export interface MemoryBackendOptions {
  readonly blockSize: number;
  readonly blockCount: number;
  /** Refuse writes (DATA PROTECT / WRITE PROTECTED at the SCSI layer). */
  readonly readOnly?: boolean;
  /**
   * Offer thin provisioning (discard, mapping status and provisioning usage, so
   * LBPME/LBPWS/UNMAP and the provisioning log page are advertised). Default
   * true. Storage is sparse either way.
   */
  readonly thin?: boolean;
  /** Allocation unit in blocks (default: 64 KiB worth of blocks, at least 1). */
  readonly chunkBlocks?: number;
}

/** Thrown by the MemoryBackend constructor for impossible geometry. */
export class MemoryBackendConfigError extends ScsiError {
  static override readonly brand: string = '@tcmu/scsi.MemoryBackendConfigError';
  override readonly name = 'MemoryBackendConfigError';
}

const DEFAULT_CHUNK_BYTES = 64 * 1024;

/**
 * A sparse in-memory block device. The medium is split into fixed-size chunks
 * allocated on first write; unallocated chunks read as zeros (LBPRZ). Discard
 * frees whole chunks and zeroes the partial ones at the edges.
 */
export class MemoryBackend implements BlockBackend {
  readonly blockSize: number;
  #blockCount: number;
  readonly readOnly: boolean;
  readonly unmappedReadsZero = true;
  readonly ignoresSignal = true;
  readonly synchronous = true;
  /** Blocks per allocation chunk (also the mapping granularity). */
  readonly chunkBlocks: number;
  readonly discard?: (lba: number, blocks: number) => void;
  readonly mappingStatus?: (lba: number, maxBlocks: number) => LbaExtent;
  readonly provisioningUsage?: () => ProvisioningUsage;
  readonly #chunkBytes: number;
  readonly #chunks = new Map<number, Uint8Array>();

  constructor(options: MemoryBackendOptions) {
    const { blockSize, blockCount } = options;
    if (!Number.isSafeInteger(blockSize) || blockSize < 1) {
      throw new MemoryBackendConfigError(`blockSize must be a positive integer, got ${blockSize}`);
    }
    if (!Number.isSafeInteger(blockCount) || blockCount < 1) {
      throw new MemoryBackendConfigError(`blockCount must be a positive integer, got ${blockCount}`);
    }
    const chunkBlocks = options.chunkBlocks ?? Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / blockSize));
    if (!Number.isSafeInteger(chunkBlocks) || chunkBlocks < 1) {
      throw new MemoryBackendConfigError(`chunkBlocks must be a positive integer, got ${chunkBlocks}`);
    }
    this.blockSize = blockSize;
    this.#blockCount = blockCount;
    this.readOnly = options.readOnly ?? false;
    this.chunkBlocks = chunkBlocks;
    this.#chunkBytes = chunkBlocks * blockSize;
    if (options.thin ?? true) {
      this.discard = (lba, blocks) => this.#deallocate(lba, blocks, 'discard');
      this.mappingStatus = (lba, maxBlocks) => this.#mappingStatus(lba, maxBlocks);
      this.provisioningUsage = () => this.#provisioningUsage();
    }
  }

  get blockCount(): number {
    return this.#blockCount;
  }

  /** Online resize: new blocks read as zeros; a shrink frees what was cut off (a later grow reads zeros there). */
  resize(blockCount: number): void {
    if (!Number.isSafeInteger(blockCount) || blockCount < 1) {
      throw new MemoryBackendConfigError(`blockCount must be a positive integer, got ${blockCount}`);
    }
    if (this.readOnly) throw new BackendIoError('the backend is read-only: cannot resize', 0);
    if (blockCount < this.#blockCount) this.#deallocate(blockCount, this.#blockCount - blockCount, 'write');
    this.#blockCount = blockCount;
  }

  /** Bytes of chunk storage currently allocated. */
  get allocatedBytes(): number {
    return this.#chunks.size * this.#chunkBytes;
  }

  read(lba: number, into: Uint8Array): void {
    this.#check(lba, into.length, 'read');
    this.#transfer(lba * this.blockSize, into, false);
  }

  readv(lba: number, into: readonly Uint8Array[]): void {
    this.#check(lba, totalLength(into), 'read');
    let position = lba * this.blockSize;
    for (const segment of into) {
      this.#transfer(position, segment, false);
      position += segment.length;
    }
  }

  write(lba: number, data: Uint8Array, _options?: WriteOptions): void {
    this.#check(lba, data.length, 'write');
    this.#refuseIfReadOnly(lba);
    this.#transfer(lba * this.blockSize, data, true);
  }

  writev(lba: number, data: readonly Uint8Array[], _options?: WriteOptions): void {
    this.#check(lba, totalLength(data), 'write');
    this.#refuseIfReadOnly(lba);
    let position = lba * this.blockSize;
    for (const segment of data) {
      this.#transfer(position, segment, true);
      position += segment.length;
    }
  }

  /** Copies between `bytes` and the medium at byte `position`, chunk by chunk (unallocated chunks read as zeros). */
  #transfer(position: number, bytes: Uint8Array, write: boolean): void {
    const chunkBytes = this.#chunkBytes;
    let offset = 0;
    let chunkIndex = Math.floor(position / chunkBytes);
    let within = position - chunkIndex * chunkBytes;
    while (offset < bytes.length) {
      const n = Math.min(bytes.length - offset, chunkBytes - within);
      let chunk = this.#chunks.get(chunkIndex);
      if (write) {
        if (chunk === undefined) {
          chunk = new Uint8Array(chunkBytes);
          this.#chunks.set(chunkIndex, chunk);
        }
        chunk.set(n === bytes.length ? bytes : bytes.subarray(offset, offset + n), within);
      } else if (chunk === undefined) {
        bytes.fill(0, offset, offset + n);
      } else {
        bytes.set(chunk.subarray(within, within + n), offset);
      }
      offset += n;
      chunkIndex++;
      within = 0;
    }
  }

  flush(): void {}

  /** The medium is memory: every block already is where a read finds it (PRE-FETCH: CONDITION MET). */
  prefetch(lba: number, blocks: number): void {
    this.#checkBlocks(lba, blocks, 'prefetch');
  }

  writeZeroes(lba: number, blocks: number): void {
    this.#deallocate(lba, blocks, 'write');
  }

  /** Free whole chunks in the range (the medium's last chunk may be shorter) and zero the partial chunks at its edges. */
  #deallocate(lba: number, blocks: number, op: 'discard' | 'write'): void {
    this.#checkBlocks(lba, blocks, op);
    this.#refuseIfReadOnly(lba);
    const end = lba + blocks;
    let at = lba;
    while (at < end) {
      const chunkIndex = Math.floor(at / this.chunkBlocks);
      const chunkStart = chunkIndex * this.chunkBlocks;
      const chunkEnd = Math.min(chunkStart + this.chunkBlocks, end);
      const chunk = this.#chunks.get(chunkIndex);
      if (chunk !== undefined) {
        const wholeChunk = chunkEnd === Math.min(chunkStart + this.chunkBlocks, this.blockCount);
        if (at === chunkStart && wholeChunk) this.#chunks.delete(chunkIndex);
        else chunk.fill(0, (at - chunkStart) * this.blockSize, (chunkEnd - chunkStart) * this.blockSize);
      }
      at = chunkEnd;
    }
  }

  /** The extent starting at `lba` whose chunks are all allocated, or all not. */
  #mappingStatus(lba: number, maxBlocks: number): LbaExtent {
    this.#checkBlocks(lba, 1, 'read');
    const limit = Math.min(this.blockCount, lba + Math.max(1, maxBlocks));
    const mapped = this.#chunks.has(Math.floor(lba / this.chunkBlocks));
    let end = (Math.floor(lba / this.chunkBlocks) + 1) * this.chunkBlocks;
    while (end < limit && this.#chunks.has(end / this.chunkBlocks) === mapped) end += this.chunkBlocks;
    return { lba, blocks: Math.min(end, limit) - lba, state: mapped ? 'mapped' : 'deallocated' };
  }

  /** Allocated chunks are the mapped blocks; every other block can still be mapped (the unit's own memory). */
  #provisioningUsage(): ProvisioningUsage {
    const lastChunk = Math.floor((this.blockCount - 1) / this.chunkBlocks);
    let mappedBlocks = this.#chunks.size * this.chunkBlocks;
    if (this.#chunks.has(lastChunk)) mappedBlocks -= (lastChunk + 1) * this.chunkBlocks - this.blockCount;
    return { mappedBlocks, availableBlocks: this.blockCount - mappedBlocks, availableShared: false };
  }

  #check(lba: number, bytes: number, op: 'read' | 'write'): number {
    if (bytes % this.blockSize !== 0) {
      throw new BackendIoError(
        `${op} of ${bytes} bytes is not a multiple of the ${this.blockSize}-byte block`,
        lba,
      );
    }
    const blocks = bytes / this.blockSize;
    this.#checkBlocks(lba, blocks, op);
    return blocks;
  }

  #checkBlocks(lba: number, blocks: number, op: string): void {
    if (
      !Number.isSafeInteger(lba) ||
      lba < 0 ||
      !Number.isSafeInteger(blocks) ||
      blocks < 0 ||
      lba + blocks > this.blockCount
    ) {
      throw new BackendIoError(
        `${op} of ${blocks} blocks at LBA ${lba} is outside the ${this.blockCount}-block medium`,
        lba,
      );
    }
  }

  #refuseIfReadOnly(lba: number): void {
    if (this.readOnly) throw new BackendIoError('the backend is read-only', lba);
  }
}

const totalLength = (segments: readonly Uint8Array[]): number => {
  let total = 0;
  for (const segment of segments) total += segment.length;
  return total;
};
