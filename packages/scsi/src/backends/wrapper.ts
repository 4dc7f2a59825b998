import type {
  BlockBackend,
  DirectFile,
  LbaExtent,
  ProvisioningUsage,
  WriteOptions,
} from '../core/backend.js';

/** The optional methods of BlockBackend: present means offered. */
export type BackendCapability =
  | 'readv'
  | 'writev'
  | 'discard'
  | 'writeZeroes'
  | 'mappingStatus'
  | 'provisioningUsage'
  | 'prefetch'
  | 'resize';

/**
 * Every member of BlockBackend, so wrappers and their tests can check that
 * nothing is dropped on the way (a forgotten flag silently turns a fast path
 * or a command off).
 */
export const BACKEND_MEMBERS = {
  flags: [
    'blockSize',
    'blockCount',
    'readOnly',
    'physicalBlockExponent',
    'unmappedReadsZero',
    'ignoresSignal',
    'directFile',
    'synchronous',
  ],
  methods: ['read', 'write', 'flush'],
  capabilities: [
    'readv',
    'writev',
    'discard',
    'writeZeroes',
    'mappingStatus',
    'provisioningUsage',
    'prefetch',
    'resize',
  ],
} as const satisfies {
  flags: readonly (keyof BlockBackend)[];
  methods: readonly (keyof BlockBackend)[];
  capabilities: readonly BackendCapability[];
};

/**
 * The one way to wrap a backend: forwards every flag and every call to
 * `inner`, and offers exactly the optional methods `inner` offers. A subclass
 * overrides what it changes (the `*Inner` hooks for the optional methods) and
 * names the capabilities it takes away in `withhold`.
 */
export class BackendWrapper implements BlockBackend {
  readonly inner: BlockBackend;
  // `declare`: an absent capability must be absent, not an own property holding undefined.
  declare readonly readv?: (
    lba: number,
    into: readonly Uint8Array[],
    signal?: AbortSignal,
  ) => void | Promise<void>;
  declare readonly writev?: (
    lba: number,
    data: readonly Uint8Array[],
    options: WriteOptions,
    signal?: AbortSignal,
  ) => void | Promise<void>;
  declare readonly discard?: (lba: number, blocks: number, signal?: AbortSignal) => void | Promise<void>;
  declare readonly writeZeroes?: (lba: number, blocks: number, signal?: AbortSignal) => void | Promise<void>;
  declare readonly mappingStatus?: (lba: number, maxBlocks: number) => LbaExtent | Promise<LbaExtent>;
  declare readonly provisioningUsage?: () => ProvisioningUsage | Promise<ProvisioningUsage>;
  declare readonly prefetch?: (lba: number, blocks: number, signal?: AbortSignal) => void | Promise<void>;
  declare readonly resize?: (blockCount: number) => void | Promise<void>;

  constructor(inner: BlockBackend, withhold: readonly BackendCapability[] = []) {
    this.inner = inner;
    const offers = (name: BackendCapability) => inner[name] !== undefined && !withhold.includes(name);
    const self = this as { -readonly [K in BackendCapability]?: BlockBackend[K] };
    if (offers('readv')) self.readv = (lba, into, signal) => this.readvInner(lba, into, signal);
    if (offers('writev'))
      self.writev = (lba, data, options, signal) => this.writevInner(lba, data, options, signal);
    if (offers('discard')) self.discard = (lba, blocks, signal) => this.discardInner(lba, blocks, signal);
    if (offers('writeZeroes'))
      self.writeZeroes = (lba, blocks, signal) => this.writeZeroesInner(lba, blocks, signal);
    if (offers('mappingStatus'))
      self.mappingStatus = (lba, maxBlocks) => this.mappingStatusInner(lba, maxBlocks);
    if (offers('provisioningUsage')) self.provisioningUsage = () => this.provisioningUsageInner();
    if (offers('prefetch')) self.prefetch = (lba, blocks, signal) => this.prefetchInner(lba, blocks, signal);
    if (offers('resize')) self.resize = (blockCount) => this.resizeInner(blockCount);
  }

  get blockSize(): number {
    return this.inner.blockSize;
  }
  get blockCount(): number {
    return this.inner.blockCount;
  }
  get readOnly(): boolean | undefined {
    return this.inner.readOnly;
  }
  get physicalBlockExponent(): number | undefined {
    return this.inner.physicalBlockExponent;
  }
  get unmappedReadsZero(): boolean | undefined {
    return this.inner.unmappedReadsZero;
  }
  get ignoresSignal(): boolean | undefined {
    return this.inner.ignoresSignal;
  }
  get directFile(): DirectFile | undefined {
    return this.inner.directFile;
  }
  get synchronous(): boolean | undefined {
    return this.inner.synchronous;
  }

  read(lba: number, into: Uint8Array, signal?: AbortSignal): void | Promise<void> {
    return this.inner.read(lba, into, signal);
  }
  write(lba: number, data: Uint8Array, options: WriteOptions, signal?: AbortSignal): void | Promise<void> {
    return this.inner.write(lba, data, options, signal);
  }
  flush(signal?: AbortSignal): void | Promise<void> {
    return this.inner.flush(signal);
  }

  protected readvInner(lba: number, into: readonly Uint8Array[], signal?: AbortSignal): void | Promise<void> {
    return this.inner.readv!(lba, into, signal);
  }
  protected writevInner(
    lba: number,
    data: readonly Uint8Array[],
    options: WriteOptions,
    signal?: AbortSignal,
  ): void | Promise<void> {
    return this.inner.writev!(lba, data, options, signal);
  }
  protected discardInner(lba: number, blocks: number, signal?: AbortSignal): void | Promise<void> {
    return this.inner.discard!(lba, blocks, signal);
  }
  protected writeZeroesInner(lba: number, blocks: number, signal?: AbortSignal): void | Promise<void> {
    return this.inner.writeZeroes!(lba, blocks, signal);
  }
  protected mappingStatusInner(lba: number, maxBlocks: number): LbaExtent | Promise<LbaExtent> {
    return this.inner.mappingStatus!(lba, maxBlocks);
  }
  protected provisioningUsageInner(): ProvisioningUsage | Promise<ProvisioningUsage> {
    return this.inner.provisioningUsage!();
  }

  protected prefetchInner(lba: number, blocks: number, signal?: AbortSignal): void | Promise<void> {
    return this.inner.prefetch!(lba, blocks, signal);
  }

  protected resizeInner(blockCount: number): void | Promise<void> {
    return this.inner.resize!(blockCount);
  }
}
