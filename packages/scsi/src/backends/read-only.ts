import { BackendIoError, type BlockBackend } from '../core/backend.js';
import { BackendWrapper } from './wrapper.js';

/**
 * Exposes another backend read-only: `readOnly` is true (the SCSI layer
 * answers writes with DATA PROTECT / WRITE PROTECTED) and every modifying
 * call is refused with BackendIoError even if reached directly. Everything
 * else, the read capabilities included, is the inner backend's.
 */
export class ReadOnlyBackend extends BackendWrapper {
  constructor(inner: BlockBackend) {
    // A read-only medium keeps its capacity too (its file is open read-only).
    super(inner, ['writev', 'discard', 'writeZeroes', 'resize']);
  }

  override get readOnly(): boolean {
    return true;
  }

  override write(lba: number): never {
    throw new BackendIoError('the backend is read-only', lba);
  }

  /** Nothing was written through this wrapper, so nothing needs flushing. */
  override flush(): void {}
}
