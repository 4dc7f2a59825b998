import { describe, expect, it } from 'vitest';
import { RangeLocks } from './locks.js';

const tick = () => new Promise((r) => setTimeout(r, 0));
type Release = () => void;

describe('RangeLocks', () => {
  it('an uncontended shared lock is granted synchronously', () => {
    const locks = new RangeLocks();
    const release = locks.lock(0, 8, 'shared');
    expect(typeof release).toBe('function');
    expect(locks.held).toBe(1);
    (release as Release)();
    expect(locks.held).toBe(0);
  });

  it('an uncontended exclusive lock is granted synchronously', () => {
    const locks = new RangeLocks();
    const release = locks.lock(0, 8, 'exclusive');
    expect(typeof release).toBe('function');
    (release as Release)();
  });

  it('shared locks on overlapping ranges do not block each other', () => {
    const locks = new RangeLocks();
    const a = locks.lock(0, 8, 'shared');
    const b = locks.lock(4, 8, 'shared');
    expect(typeof a).toBe('function');
    expect(typeof b).toBe('function');
  });

  it('an exclusive lock waits for every overlapping holder', async () => {
    const locks = new RangeLocks();
    const shared = locks.lock(0, 8, 'shared') as Release;
    let granted = false;
    const exclusive = Promise.resolve(locks.lock(7, 2, 'exclusive')).then((r) => {
      granted = true;
      return r;
    });
    await tick();
    expect(granted).toBe(false);
    expect(locks.waiting).toBe(1);
    shared();
    (await exclusive)();
    expect(granted).toBe(true);
  });

  it('locks on disjoint ranges never wait, even around an exclusive holder', () => {
    const locks = new RangeLocks();
    const exclusive = locks.lock(10, 5, 'exclusive') as Release;
    expect(typeof locks.lock(0, 10, 'shared')).toBe('function');
    expect(typeof locks.lock(15, 5, 'exclusive')).toBe('function');
    exclusive();
  });

  it('a shared request overlapping an exclusive holder waits', async () => {
    const locks = new RangeLocks();
    const exclusive = locks.lock(0, 4, 'exclusive') as Release;
    const shared = locks.lock(3, 1, 'shared');
    expect(shared).toBeInstanceOf(Promise);
    exclusive();
    expect(typeof (await shared)).toBe('function');
  });

  it('FIFO: a later shared request overlapping a waiting exclusive queues behind it (no starvation)', async () => {
    const locks = new RangeLocks();
    const order: string[] = [];
    const first = locks.lock(0, 8, 'shared') as Release;
    const exclusive = Promise.resolve(locks.lock(0, 8, 'exclusive')).then((r) => {
      order.push('exclusive');
      return r;
    });
    const later = Promise.resolve(locks.lock(2, 2, 'shared')).then((r) => {
      order.push('later shared');
      return r;
    });
    await tick();
    expect(order).toEqual([]);
    first();
    const releaseExclusive = await exclusive;
    await tick();
    expect(order).toEqual(['exclusive']);
    releaseExclusive();
    (await later)();
    expect(order).toEqual(['exclusive', 'later shared']);
  });

  it('while an exclusive waits, a shared request elsewhere is still granted at once', async () => {
    const locks = new RangeLocks();
    const holder = locks.lock(0, 8, 'shared') as Release;
    const exclusive = locks.lock(0, 8, 'exclusive');
    const elsewhere = locks.lock(100, 8, 'shared');
    expect(typeof elsewhere).toBe('function');
    (elsewhere as Release)();
    holder();
    (await exclusive)();
  });

  it('exclusive waiters on the same range are served in arrival order', async () => {
    const locks = new RangeLocks();
    const order: number[] = [];
    const holder = locks.lock(0, 1, 'exclusive') as Release;
    const waiters = [1, 2, 3].map((n) =>
      Promise.resolve(locks.lock(0, 1, 'exclusive')).then((release) => {
        order.push(n);
        release();
      }),
    );
    holder();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
  });

  it('releasing twice is harmless', async () => {
    const locks = new RangeLocks();
    const shared = locks.lock(0, 1, 'shared') as Release;
    shared();
    shared();
    const exclusive = locks.lock(0, 1, 'exclusive') as Release;
    exclusive();
    exclusive();
    expect(locks.held).toBe(0);
    expect(typeof locks.lock(0, 1, 'exclusive')).toBe('function');
  });

  it('a zero-block range conflicts with nothing', () => {
    const locks = new RangeLocks();
    locks.lock(0, 10, 'exclusive');
    expect(typeof locks.lock(5, 0, 'exclusive')).toBe('function');
  });
});
