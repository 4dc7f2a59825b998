import { BackendIoError, type BlockBackend, type LbaExtent } from '../core/backend.js';

/**
 * Exposes another backend read-only: `readOnly` is true (the SCSI layer
 * answers writes with DATA PROTECT / WRITE PROTECTED) and every modifying
 * call is refused with BackendIoError even if reached directly.
 */
export class ReadOnlyBackend implements BlockBackend {
  readonly readOnly = true;
  readonly mappingStatus?: (lba: number, maxBlocks: number) => LbaExtent | Promise<LbaExtent>;

  constructor(readonly inner: BlockBackend) {
    const mappingStatus = inner.mappingStatus;
    if (mappingStatus !== undefined)
      this.mappingStatus = (lba, maxBlocks) => mappingStatus.call(inner, lba, maxBlocks);
  }

  get blockSize(): number {
    return this.inner.blockSize;
  }
  get blockCount(): number {
    return this.inner.blockCount;
  }
  get physicalBlockExponent(): number | undefined {
    return this.inner.physicalBlockExponent;
  }
  get unmappedReadsZero(): boolean | undefined {
    return this.inner.unmappedReadsZero;
  }

  read(lba: number, into: Uint8Array, signal?: AbortSignal): void | Promise<void> {
    return this.inner.read(lba, into, signal);
  }

  write(lba: number): never {
    throw new BackendIoError('the backend is read-only', lba);
  }

  /** Nothing was written through this wrapper, so nothing needs flushing. */
  flush(): void {}
}
