import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { RbdAddonLoadError } from './errors.js';

/** What `stat` and `open` report of an image (rbd_stat). */
export interface NativeStat {
  readonly size: number;
  readonly objectSize: number;
}

export type NativeCallback<T> = (error: Error | null, value: T) => void;

/** The parameters of NativeImage.open (strings empty when absent). */
export interface NativeOpenParams {
  readonly conf: string;
  readonly clientId: string;
  readonly keyring: string;
  readonly pool: string;
  readonly namespace: string;
  readonly image: string;
  readonly snapshot: string;
  readonly readOnly: boolean;
  readonly exclusive: boolean;
  /** rados_conf_set after the conf file, in order */
  readonly settings: readonly (readonly [string, string])[];
  /** rados_conf_set only where the value after the conf file is still 0 (the timeouts' "forever") */
  readonly fallbacks: readonly (readonly [string, string])[];
}

/**
 * One image (src/native/rbd.cc). Every I/O call takes an id and returns at once (or throws
 * when librbd refuses it); its completion arrives later through the constructor's
 * `onComplete`, batched: `results` holds (id, return value, mismatch offset) triples, and
 * `updated` says the image header changed (a resize, a new snapshot...).
 */
export interface NativeImage {
  open(params: NativeOpenParams, callback: NativeCallback<NativeStat>): void;
  stat(callback: NativeCallback<NativeStat>): void;
  close(callback: NativeCallback<undefined>): void;
  read(id: number, offset: number, into: Uint8Array): void;
  readv(id: number, offset: number, into: readonly Uint8Array[]): void;
  write(id: number, offset: number, data: Uint8Array, fua: boolean): void;
  writev(id: number, offset: number, data: readonly Uint8Array[]): void;
  discard(id: number, offset: number, length: number): void;
  writeZeroes(id: number, offset: number, length: number): void;
  writeSame(id: number, offset: number, length: number, pattern: Uint8Array): void;
  compareAndWrite(id: number, offset: number, compare: Uint8Array, data: Uint8Array, fua: boolean): void;
  flush(id: number): void;
  /** rbd_diff_iterate2 over the object map: (offset, length, exists) triples. */
  allocation(offset: number, length: number, callback: NativeCallback<Float64Array>): void;
}

export type CompletionCallback = (results: Float64Array, updated: boolean) => void;

export interface NativeAddon {
  Image: new (onComplete: CompletionCallback) => NativeImage;
  /** librbd's version, e.g. "1.16.0" (Ceph 16.2) */
  librbdVersion: string;
}

/** Package root: one level above src/ (sources) and dist/ (build). */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

let cached: NativeAddon | undefined;

/**
 * Loads build/Release/tcmu_rbd.node (or a prebuild) once, when the first image opens.
 * @throws RbdAddonLoadError with the command that builds it, or the package that is missing
 * @internal
 */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  let addon: NativeAddon;
  try {
    const nodeGypBuild = createRequire(import.meta.url)('node-gyp-build') as (dir: string) => NativeAddon;
    addon = nodeGypBuild(PACKAGE_ROOT);
  } catch (error) {
    const message = (error as Error).message;
    const fix = /lib(rbd|rados)\.so/.test(message)
      ? 'install librbd1 and librados2 (apt-get install librbd1 librados2)'
      : `build it with: cd ${PACKAGE_ROOT} && node scripts/addon.mjs install (needs librbd-dev: apt-get install librbd-dev)`;
    throw new RbdAddonLoadError(`the @tcmu/rbd native addon does not load (${message}); ${fix}`, {
      cause: error,
    });
  }
  if (typeof addon.Image !== 'function' || typeof addon.Image.prototype.compareAndWrite !== 'function') {
    throw new RbdAddonLoadError(
      'the @tcmu/rbd native addon is stale: rebuild it (node scripts/addon.mjs build)',
    );
  }
  cached = addon;
  return addon;
}

/** librbd's version, e.g. "1.16.0" (Ceph 16.2). Loads the addon. */
export function librbdVersion(): string {
  return loadAddon().librbdVersion;
}
