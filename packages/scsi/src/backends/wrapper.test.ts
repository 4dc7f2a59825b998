import { describe, expect, it } from 'vitest';
import type { BlockBackend, DirectFile } from '../core/backend.js';
import { FaultInjectionBackend } from './fault-injection.js';
import { MemoryBackend } from './memory.js';
import { ReadOnlyBackend } from './read-only.js';
import { BACKEND_MEMBERS, type BackendCapability, BackendWrapper } from './wrapper.js';

/** A backend with every member set to something recognisable. */
function everything(): BlockBackend & { calls: string[] } {
  const calls: string[] = [];
  const record =
    (name: string) =>
    (...args: unknown[]) => {
      calls.push(`${name}:${args.length}`);
    };
  const directFile: DirectFile = { fd: 42 };
  return {
    calls,
    blockSize: 4096,
    blockCount: 77,
    readOnly: false,
    physicalBlockExponent: 3,
    unmappedReadsZero: true,
    ignoresSignal: true,
    directFile,
    synchronous: true,
    read: record('read'),
    write: record('write'),
    flush: record('flush'),
    readv: record('readv'),
    writev: record('writev'),
    discard: record('discard'),
    writeZeroes: record('writeZeroes'),
    resize: record('resize'),
    mappingStatus: (lba: number, maxBlocks: number) => {
      calls.push('mappingStatus:2');
      return { lba, blocks: maxBlocks, state: 'mapped' as const };
    },
    provisioningUsage: () => {
      calls.push('provisioningUsage:0');
      return { mappedBlocks: 5, availableBlocks: 72 };
    },
    prefetch: record('prefetch'),
  };
}

describe('BackendWrapper', () => {
  it('forwards every flag and every capability of BlockBackend', async () => {
    const inner = everything();
    const wrapper = new BackendWrapper(inner);
    for (const flag of BACKEND_MEMBERS.flags) expect(wrapper[flag], flag).toBe(inner[flag]);
    for (const name of [...BACKEND_MEMBERS.methods, ...BACKEND_MEMBERS.capabilities]) {
      expect(typeof wrapper[name], name).toBe('function');
    }
    await wrapper.read(0, new Uint8Array(4096));
    await wrapper.write(0, new Uint8Array(4096), { fua: false });
    await wrapper.flush();
    await wrapper.readv!(0, [new Uint8Array(4096)]);
    await wrapper.writev!(0, [new Uint8Array(4096)], { fua: true });
    await wrapper.discard!(0, 1);
    await wrapper.writeZeroes!(0, 1);
    await wrapper.mappingStatus!(0, 9);
    expect(await wrapper.provisioningUsage!()).toEqual({ mappedBlocks: 5, availableBlocks: 72 });
    await wrapper.prefetch!(0, 1);
    await wrapper.resize!(80);
    expect(inner.calls).toEqual([
      'read:3',
      'write:4',
      'flush:1',
      'readv:3',
      'writev:4',
      'discard:3',
      'writeZeroes:3',
      'mappingStatus:2',
      'provisioningUsage:0',
      'prefetch:3',
      'resize:1',
    ]);
  });

  it('offers exactly the optional methods the inner backend offers (absent, not undefined)', () => {
    const plain: BlockBackend = { blockSize: 512, blockCount: 1, read() {}, write() {}, flush() {} };
    const wrapper = new BackendWrapper(plain);
    for (const name of BACKEND_MEMBERS.capabilities) expect(name in wrapper, name).toBe(false);
    const withheld = new BackendWrapper(everything(), ['discard', 'writev']);
    expect('discard' in withheld).toBe(false);
    expect('writev' in withheld).toBe(false);
    expect(typeof withheld.readv).toBe('function');
  });
});

describe('the wrappers keep what they do not change', () => {
  const keptBy: Record<string, { make: (inner: BlockBackend) => BlockBackend; changes: string[] }> = {
    ReadOnlyBackend: {
      make: (inner) => new ReadOnlyBackend(inner),
      changes: ['readOnly', 'writev', 'discard', 'writeZeroes', 'resize'],
    },
    FaultInjectionBackend: {
      make: (inner) => new FaultInjectionBackend(inner),
      changes: ['directFile', 'synchronous'],
    },
    'FaultInjectionBackend with latency': {
      make: (inner) => new FaultInjectionBackend(inner, { latencyMs: 1 }),
      changes: ['directFile', 'synchronous', 'ignoresSignal'],
    },
  };
  for (const [name, { make, changes }] of Object.entries(keptBy)) {
    it(`${name} forwards every other flag and capability`, () => {
      const inner = everything();
      const wrapped = make(inner);
      for (const flag of BACKEND_MEMBERS.flags) {
        if (!changes.includes(flag)) expect(wrapped[flag], flag).toBe(inner[flag]);
      }
      for (const capability of BACKEND_MEMBERS.capabilities as readonly BackendCapability[]) {
        expect(typeof wrapped[capability] === 'function', capability).toBe(!changes.includes(capability));
      }
    });
  }

  it('ReadOnlyBackend reads through readv and refuses every modification', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 8 });
    inner.write(2, new Uint8Array(1024).fill(6));
    const ro = new ReadOnlyBackend(inner);
    const parts = [new Uint8Array(512), new Uint8Array(512)];
    await ro.readv!(2, parts);
    expect(parts.every((p) => p.every((b) => b === 6))).toBe(true);
    expect(() => ro.write(0)).toThrow(expect.objectContaining({ name: 'BackendIoError', lba: 0 }));
  });

  it('FaultInjectionBackend fails scatter lists touching a selected LBA', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 8 });
    const faulty = new FaultInjectionBackend(inner, { failReads: [3], failWrites: [5] });
    await expect(faulty.readv!(2, [new Uint8Array(512), new Uint8Array(512)])).rejects.toMatchObject({
      lba: 3,
    });
    await expect(faulty.writev!(4, [new Uint8Array(1024)], { fua: false })).rejects.toMatchObject({ lba: 5 });
    await faulty.readv!(0, [new Uint8Array(1024)]);
  });

  it('FaultInjectionBackend fails a prefetch touching a selected read LBA', async () => {
    const faulty = new FaultInjectionBackend(new MemoryBackend({ blockSize: 512, blockCount: 8 }), {
      failReads: [6],
    });
    await expect(faulty.prefetch!(4, 4)).rejects.toMatchObject({ name: 'BackendIoError', lba: 6 });
    await faulty.prefetch!(0, 6);
  });
});
