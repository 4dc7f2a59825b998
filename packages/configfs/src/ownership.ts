import { AlreadyExistsError } from './errors.js';
import type { ConfigfsLock } from './lock.js';
import type { OwnerRecord, OwnerRegistry } from './owner.js';
import type { Transaction } from './transaction.js';

/**
 * The manager's ownership rules over the marker files of OwnerRegistry, and the lock:
 * every change runs under it, so that a marker and its object appear (or go) as one step.
 */
export class OwnershipControl {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly owners: OwnerRegistry,
    private readonly lock: ConfigfsLock,
    private readonly targetRoot: string,
  ) {}

  /** One change at a time: in this manager (a queue) and across processes (the lock). */
  serialized<T>(body: () => Promise<T>): Promise<T> {
    const locked = async () => {
      const release = await this.lock.acquire();
      try {
        return await body();
      } finally {
        await release();
      }
    };
    const run = this.queue.then(locked, locked);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Claims `rel` before its object is made; a rollback releases the claim. */
  async claim(tx: Transaction, rel: string, note?: Readonly<Record<string, string>>): Promise<void> {
    await this.owners.claim(rel, note);
    tx.add(`release marker of ${rel}`, () => this.owners.release(rel));
  }

  /** Our marker goes with the object; a dead owner's too; a live owner's stays (its owner releases it). */
  async dropMarker(rel: string): Promise<void> {
    const record = await this.owners.read(rel);
    if (record === undefined) return;
    if (await this.owners.isOwn(record)) await this.owners.release(rel);
    else await this.owners.releaseStale(record);
  }

  /** An existing target is only extended by the process that made it. */
  async requireOwnTarget(targetRel: string): Promise<void> {
    const owner = await this.owners.read(targetRel);
    // pid and start time: a dead owner's pid reused by this process is not us.
    if (!owner || !(await this.owners.isOwn(owner))) {
      throw new AlreadyExistsError(
        `target ${targetRel} (not owned by this process)`,
        `${this.targetRoot}/${targetRel}`,
      );
    }
  }

  /** A target left without LUNs goes with them when it is ours or its owner is dead. */
  async mayRemoveTarget(owner: OwnerRecord | undefined): Promise<boolean> {
    return owner !== undefined && ((await this.owners.isOwn(owner)) || !(await this.owners.isAlive(owner)));
  }

  /** The `owned`/`ownerPid`/`stale` of an inventory entry. */
  async status(record: OwnerRecord | undefined, tagged: boolean) {
    if (record) {
      const alive = await this.owners.isAlive(record);
      return { owned: true, ownerPid: record.pid, stale: !alive };
    }
    // Tagged but without a marker: the owner is unknown (marker lost), so nobody holds it.
    return { owned: tagged, ownerPid: undefined, stale: tagged };
  }
}
