import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { ReadOnlyBackend } from '../backends/read-only.js';
import { RangeLocks } from '../sbc/locks.js';
import { plainIoProfile } from './plain-io.js';
import { LogicalUnit } from './unit.js';

const backend = () => new MemoryBackend({ blockSize: 512, blockCount: 1024 });
/** A unit that has already seen nexus 'n' (takeUnitAttention makes a nexus known). */
const unit = (options: Partial<ConstructorParameters<typeof LogicalUnit>[0]> = {}) => {
  const u = new LogicalUnit({ backend: backend(), powerOnUnitAttention: false, ...options });
  u.takeUnitAttention('n');
  return u;
};

describe('unit.plainIo: when a transport may answer plain READ/WRITE itself', () => {
  it('is open on a ready unit, and writes close on a read-only unit or with the write cache off', () => {
    expect(unit().plainIo('n')).toEqual({ reads: true, writes: true });
    expect(unit({ backend: new ReadOnlyBackend(backend()) }).plainIo('n')).toEqual({
      reads: true,
      writes: false,
    });
    const u = unit();
    u.modes.writeCacheEnabled = false;
    expect(u.plainIo('n')).toEqual({ reads: true, writes: false });
  });

  it('closes while a unit attention is pending for the nexus, and reopens once it was reported', async () => {
    const u = unit();
    await u.execute({ cdb: new Uint8Array(6), nexus: 'n' }); // the nexus is known
    u.capacityChanged();
    expect(u.plainIo('n')).toEqual({ reads: false, writes: false });
    expect((await u.execute({ cdb: new Uint8Array(6), nexus: 'n' })).status).toBe(2);
    expect(u.plainIo('n')).toEqual({ reads: true, writes: true });
    // With POWER ON attention reporting, a nexus never seen still has one pending.
    expect(new LogicalUnit({ backend: backend() }).plainIo('new').reads).toBe(false);
  });

  it('stays closed for a nexus never seen, so its first command makes it known to later attentions', async () => {
    const u = new LogicalUnit({ backend: backend(), powerOnUnitAttention: false });
    let changes = 0;
    u.onStateChange(() => changes++);
    expect(u.plainIo('first').reads).toBe(false);
    await u.execute({ cdb: new Uint8Array(6), nexus: 'first' });
    expect(changes).toBe(1);
    expect(u.plainIo('first')).toEqual({ reads: true, writes: true });
    u.capacityChanged();
    expect(u.plainIo('first').reads).toBe(false);
    const answer = await u.execute({ cdb: new Uint8Array(6), nexus: 'first' });
    expect([answer.status, answer.sense?.[12], answer.sense?.[13]]).toEqual([2, 0x2a, 0x09]);
  });

  it('closes with middleware, a stopped unit, a FORMAT, and an exclusive range lock', async () => {
    const withMiddleware = unit().use((request, next) => next(request));
    expect(withMiddleware.plainIo('n').reads).toBe(false);
    const stopped = unit();
    stopped.stopped = true;
    expect(stopped.plainIo('n').reads).toBe(false);
    const formatting = unit();
    formatting.format.begin();
    expect(formatting.plainIo('n').reads).toBe(false);
    formatting.format.fail(new Error('x'));
    expect(formatting.plainIo('n').reads).toBe(false); // corrupted until a format succeeds
    formatting.format.begin();
    formatting.format.end();
    expect(formatting.plainIo('n').reads).toBe(true);
    const locked = unit();
    const release = (await locked.locks.lock(0, 8, 'exclusive')) as () => void;
    expect(locked.plainIo('n').reads).toBe(false);
    release();
    expect(locked.plainIo('n').reads).toBe(true);
  });

  it('onStateChange reports every change that can move it', async () => {
    const u = unit();
    let changes = 0;
    const stop = u.onStateChange(() => changes++);
    await u.execute({ cdb: new Uint8Array(6), nexus: 'n' });
    const steps: Array<() => unknown> = [
      () => u.capacityChanged(),
      () => u.execute({ cdb: new Uint8Array(6), nexus: 'n' }),
      () => {
        u.stopped = true;
      },
      () => {
        u.modes.writeCacheEnabled = false;
      },
      () => u.format.begin(),
      () => u.format.end(),
      () => u.override({ ...u.table.get(0x00)!, name: 'TUR again' }),
      async () => ((await u.locks.lock(0, 1, 'exclusive')) as () => void)(),
      () => u.use((request, next) => next(request)),
    ];
    for (const step of steps) {
      const before = changes;
      await step();
      expect(changes, String(step)).toBeGreaterThan(before);
    }
    stop();
    const before = changes;
    u.stopped = false;
    expect(changes).toBe(before);
  });
});

describe('plainIoProfile', () => {
  it('gives each built-in READ/WRITE its reserved bits plus NACA, protection and FUA', () => {
    const profile = plainIoProfile(unit({ config: { maxTransferBlocks: 256 } }));
    expect(profile).toMatchObject({ blockSize: 512, blockCount: 1024, maxTransferBlocks: 256 });
    expect([...profile.opcodes.keys()].sort((a, b) => a - b)).toEqual([
      0x08, 0x0a, 0x28, 0x2a, 0x88, 0x8a, 0xa8, 0xaa,
    ]);
    // READ(10): byte 1 bits 2-0 reserved... plus RDPROTECT (7-5) and FUA (3); DPO (4) allowed.
    expect([...profile.opcodes.get(0x28)!]).toEqual([0, 0xef, 0, 0, 0, 0, 0xc0, 0, 0, 0xff]);
    // READ(6): no flag byte; the control byte (5) carries NACA.
    expect([...profile.opcodes.get(0x08)!]).toEqual([0, 0xe0, 0, 0, 0, 0xff]);
  });

  it('leaves out an opcode the unit overrides', () => {
    const u = unit();
    u.override({ ...u.table.get(0x28)!, handler: () => undefined });
    expect(plainIoProfile(u).opcodes.has(0x28)).toBe(false);
    expect(plainIoProfile(u).opcodes.has(0x88)).toBe(true);
  });
});

describe('RangeLocks: the shared fast path', () => {
  it('tryShared grants without recording a range until an exclusive lock is held or waited for', async () => {
    let notified = 0;
    const locks = new RangeLocks(() => notified++);
    expect(locks.tryShared()).toBe(true);
    const exclusive = locks.lock(0, 8, 'exclusive');
    expect(exclusive).toBeInstanceOf(Promise); // waits for the shared holder
    expect(locks.exclusiveActive).toBe(true);
    expect(locks.tryShared()).toBe(false);
    locks.releaseShared();
    const release = await exclusive;
    expect(locks.exclusiveActive).toBe(true);
    release();
    expect(locks.exclusiveActive).toBe(false);
    expect(locks.tryShared()).toBe(true);
    locks.releaseShared();
    expect(notified).toBe(2); // requested (waiting), released
  });
});
