import type { RangeLockManager } from '../core/command.js';

export type LockMode = 'shared' | 'exclusive';
export type ReleaseLock = () => void;

interface Holder {
  readonly lba: number;
  readonly end: number;
  readonly exclusive: boolean;
}

interface Waiter extends Holder {
  readonly grant: (release: ReleaseLock) => void;
}

const overlaps = (a: Holder, b: Holder): boolean => a.lba < b.end && b.lba < a.end;
const conflicts = (a: Holder, b: Holder): boolean => (a.exclusive || b.exclusive) && overlaps(a, b);
const noop: ReleaseLock = () => {};

/**
 * Shared/exclusive locks on LBA ranges [lba, lba + blocks).
 *
 * Hot path: while no exclusive lock is held or waited for, a shared lock is a
 * counter increment and comes back synchronously. Such "untracked" shared
 * holders have no recorded range, so an exclusive request waits until all of
 * them are released; no new untracked holder is admitted meanwhile, so it
 * cannot starve.
 *
 * Waiters are served in arrival order: a request waits behind any earlier
 * waiter it conflicts with, so an exclusive waiter is never overtaken by a
 * later overlapping shared request (FIFO fairness). Non-overlapping requests
 * proceed independently.
 */
export class RangeLocks implements RangeLockManager {
  #untrackedShared = 0;
  #exclusiveHeld = 0;
  #exclusiveWaiting = 0;
  readonly #holders = new Set<Holder>();
  #waiters: Waiter[] = [];
  readonly #onExclusive: (() => void) | undefined;

  /** `onExclusive`: called whenever an exclusive lock is requested, granted or released. */
  constructor(onExclusive?: () => void) {
    this.#onExclusive = onExclusive;
  }

  /** An exclusive lock is held or waited for (the unit's fast paths must stand back). */
  get exclusiveActive(): boolean {
    return this.#exclusiveHeld > 0 || this.#exclusiveWaiting > 0;
  }

  /** Number of granted locks (for diagnostics and tests). */
  get held(): number {
    return this.#untrackedShared + this.#holders.size;
  }

  /** Number of requests waiting for a conflicting holder to release. */
  get waiting(): number {
    return this.#waiters.length;
  }

  lock(lba: number, blocks: number, mode: LockMode): ReleaseLock | Promise<ReleaseLock> {
    if (!(blocks > 0)) return noop;
    if (mode === 'shared' && this.tryShared()) return this.#untrackedRelease();
    const request: Holder = { lba, end: lba + blocks, exclusive: mode === 'exclusive' };
    if (this.#grantable(request, this.#waiters.length)) {
      const release = this.#take(request);
      if (request.exclusive) this.#onExclusive?.();
      return release;
    }
    if (request.exclusive) this.#exclusiveWaiting++;
    const waiting = new Promise<ReleaseLock>((resolve) => {
      this.#waiters.push({ ...request, grant: resolve });
    });
    if (request.exclusive) this.#onExclusive?.();
    return waiting;
  }

  tryShared(): boolean {
    if (this.#exclusiveHeld !== 0 || this.#waiters.length !== 0) return false;
    this.#untrackedShared++;
    return true;
  }

  releaseShared(): void {
    this.#untrackedShared--;
    if (this.#waiters.length > 0) this.#drain();
  }

  #untrackedRelease(): ReleaseLock {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.releaseShared();
    };
  }

  /** Can `request` be granted given the holders and the first `before` waiters? */
  #grantable(request: Holder, before: number): boolean {
    if (request.exclusive && this.#untrackedShared > 0) return false;
    for (const holder of this.#holders) if (conflicts(holder, request)) return false;
    for (let i = 0; i < before; i++) if (conflicts(this.#waiters[i]!, request)) return false;
    return true;
  }

  #take(holder: Holder): ReleaseLock {
    this.#holders.add(holder);
    if (holder.exclusive) this.#exclusiveHeld++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#holders.delete(holder);
      if (holder.exclusive) this.#exclusiveHeld--;
      if (this.#waiters.length > 0) this.#drain();
      if (holder.exclusive) this.#onExclusive?.();
    };
  }

  /** Grant, in arrival order, every waiter that no holder or earlier waiter blocks. */
  #drain(): void {
    const waiters = this.#waiters;
    const still: Waiter[] = [];
    for (const waiter of waiters) {
      let blocked = false;
      if (waiter.exclusive && this.#untrackedShared > 0) blocked = true;
      if (!blocked) for (const holder of this.#holders) if (conflicts(holder, waiter)) blocked = true;
      if (!blocked) for (const earlier of still) if (conflicts(earlier, waiter)) blocked = true;
      if (blocked) still.push(waiter);
      else {
        if (waiter.exclusive) this.#exclusiveWaiting--;
        waiter.grant(this.#take({ lba: waiter.lba, end: waiter.end, exclusive: waiter.exclusive }));
      }
    }
    this.#waiters = still;
  }
}
