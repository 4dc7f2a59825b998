import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryBackend } from './backends/memory.js';
import { putBe16, putBe32, putBe64 } from './core/bytes.js';
import { LogicalUnit } from './index.js';
import { encodeUnmapParameterList } from './sbc/provisioning.js';
import { encodeOverwriteParameters } from './sbc/sanitize.js';
import { decodeSense } from './sense/sense.js';

/**
 * Model-based test: random sequences of WRITE, WRITE SAME, UNMAP, COMPARE AND
 * WRITE, ORWRITE, WRITE ATOMIC, WRITE AND VERIFY, FORMAT UNIT, SANITIZE, READ, VERIFY and
 * PRE-FETCH, issued through the public executor in batches whose commands run concurrently,
 * must leave the medium equal to a plain reference byte array. Commands of one batch touch
 * disjoint ranges (their relative order is unspecified by SAM), except FORMAT and SANITIZE,
 * which run alone.
 */

const BLOCK = 512;
const BLOCKS = 64;

type Op =
  | { kind: 'write'; lba: number; blocks: number; seed: number }
  | {
      kind: 'writeSame';
      lba: number;
      blocks: number;
      seed: number;
      zero: boolean;
      unmap: boolean;
      sixteen: boolean;
    }
  | { kind: 'unmap'; extents: Array<{ lba: number; blocks: number }> }
  | { kind: 'compareAndWrite'; lba: number; blocks: number; seed: number; match: boolean }
  | { kind: 'orWrite' | 'writeAtomic' | 'writeAndVerify'; lba: number; blocks: number; seed: number }
  | { kind: 'read'; lba: number; blocks: number }
  | { kind: 'verify'; lba: number; blocks: number }
  | { kind: 'prefetch'; lba: number; blocks: number }
  | { kind: 'format' }
  | { kind: 'overwrite'; pattern: Uint8Array; count: number; invert: boolean }
  | { kind: 'blockErase' };

const extent = (maxBlocks: number) =>
  fc
    .record({ lba: fc.integer({ min: 0, max: BLOCKS - 1 }), blocks: fc.integer({ min: 1, max: maxBlocks }) })
    .map(({ lba, blocks }) => ({ lba, blocks: Math.min(blocks, BLOCKS - lba) }));

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: extent(12).chain((e) =>
      fc.integer({ min: 1, max: 255 }).map((seed) => ({ kind: 'write' as const, ...e, seed })),
    ),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(extent(20), fc.integer({ min: 1, max: 255 }), fc.boolean(), fc.boolean(), fc.boolean())
      .map(([e, seed, zero, unmap, sixteen]) => ({
        kind: 'writeSame' as const,
        ...e,
        seed,
        zero,
        unmap,
        sixteen,
      })),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(extent(10), { minLength: 1, maxLength: 3 })
      .map((extents) => ({ kind: 'unmap' as const, extents })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(extent(2), fc.integer({ min: 1, max: 255 }), fc.boolean())
      .map(([e, seed, match]) => ({ kind: 'compareAndWrite' as const, ...e, seed, match })),
  },
  ...(['orWrite', 'writeAtomic', 'writeAndVerify'] as const).map((kind) => ({
    weight: 2,
    arbitrary: extent(8).chain((e) => fc.integer({ min: 1, max: 255 }).map((seed) => ({ kind, ...e, seed }))),
  })),
  { weight: 4, arbitrary: extent(16).map((e) => ({ kind: 'read' as const, ...e })) },
  { weight: 1, arbitrary: extent(16).map((e) => ({ kind: 'verify' as const, ...e })) },
  { weight: 1, arbitrary: extent(16).map((e) => ({ kind: 'prefetch' as const, ...e })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'format' as const }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.uint8Array({ minLength: 1, maxLength: 24 }), fc.integer({ min: 1, max: 3 }), fc.boolean())
      .map(([pattern, count, invert]) => ({ kind: 'overwrite' as const, pattern, count, invert })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'blockErase' as const }) },
);

/** The commands that rewrite the whole medium and so run alone. */
const wholeMedium = (o: Op): o is Extract<Op, { kind: 'format' | 'overwrite' | 'blockErase' }> =>
  o.kind === 'format' || o.kind === 'overwrite' || o.kind === 'blockErase';

const rangesOf = (o: Op): Array<[number, number]> => {
  if (wholeMedium(o)) return [[0, BLOCKS]];
  if (o.kind === 'unmap') return o.extents.map((e) => [e.lba, e.lba + e.blocks]);
  return [[o.lba, o.lba + o.blocks]];
};
const overlaps = (a: Op, b: Op) =>
  rangesOf(a).some(([s1, e1]) => rangesOf(b).some(([s2, e2]) => s1 < e2 && s2 < e1));

const readsOnly = (o: Op) => o.kind === 'read' || o.kind === 'verify' || o.kind === 'prefetch';

/** Keep FORMAT and SANITIZE alone and the rest of a batch on disjoint ranges (reads may share ranges with reads). */
const disjoint = (ops: Op[]): Op[] => {
  const alone = ops.find(wholeMedium);
  if (alone !== undefined) return [alone];
  const kept: Op[] = [];
  for (const o of ops) {
    if (kept.every((k) => (readsOnly(k) && readsOnly(o)) || !overlaps(k, o))) kept.push(o);
  }
  return kept;
};

const pattern = (bytes: number, seed: number) =>
  Uint8Array.from({ length: bytes }, (_, i) => (seed * 31 + i * 7) & 0xff);

const cdb10 = (opcode: number, lba: number, blocks: number) => {
  const c = new Uint8Array(10);
  c[0] = opcode;
  putBe32(c, 2, lba);
  putBe16(c, 7, blocks);
  return c;
};
const cdb16 = (opcode: number, lba: number, blocks: number, flags = 0) => {
  const c = new Uint8Array(16);
  c[0] = opcode;
  c[1] = flags;
  putBe64(c, 2, lba);
  putBe32(c, 10, blocks);
  return c;
};

/** WRITE(10), WRITE ATOMIC(16) or WRITE AND VERIFY(12) (which compares what it wrote). */
const writeCdb = (kind: 'write' | 'writeAtomic' | 'writeAndVerify', lba: number, blocks: number) => {
  if (kind === 'write') return cdb10(0x2a, lba, blocks);
  if (kind === 'writeAndVerify') return compare12(0xae, lba, blocks);
  const c = new Uint8Array(16);
  c[0] = 0x9c;
  putBe64(c, 2, lba);
  putBe16(c, 12, blocks); // TRANSFER LENGTH; ATOMIC BOUNDARY 0
  return c;
};

/** VERIFY(12) / WRITE AND VERIFY(12) with BYTCHK 01b: the Data-Out is compared with the medium. */
const compare12 = (opcode: number, lba: number, blocks: number) => {
  const c = new Uint8Array(12);
  c[0] = opcode;
  c[1] = 0x02;
  putBe32(c, 2, lba);
  putBe32(c, 6, blocks);
  return c;
};

/** Issue one command; check its outcome against the model; return the model update to apply. */
const issue = async (unit: LogicalUnit, model: Uint8Array, o: Op): Promise<() => void> => {
  const range = (lba: number, blocks: number) => model.subarray(lba * BLOCK, (lba + blocks) * BLOCK);
  switch (o.kind) {
    case 'write':
    case 'writeAtomic':
    case 'writeAndVerify': {
      const data = pattern(o.blocks * BLOCK, o.seed);
      const r = await unit.execute({ cdb: writeCdb(o.kind, o.lba, o.blocks), dataOut: data });
      expect(r.status).toBe(0);
      return () => range(o.lba, o.blocks).set(data);
    }
    case 'writeSame': {
      const block = o.zero ? new Uint8Array(BLOCK) : pattern(BLOCK, o.seed);
      const cdb = o.sixteen ? cdb16(0x93, o.lba, o.blocks, o.unmap ? 0x08 : 0) : cdb10(0x41, o.lba, o.blocks);
      if (!o.sixteen && o.unmap) cdb[1] = 0x08;
      const r = await unit.execute({ cdb, dataOut: block });
      expect(r.status).toBe(0);
      return () => {
        for (let b = 0; b < o.blocks; b++) range(o.lba + b, 1).set(block);
      };
    }
    case 'unmap': {
      const list = encodeUnmapParameterList(o.extents);
      const cdb = new Uint8Array(10);
      cdb[0] = 0x42;
      putBe16(cdb, 7, list.length);
      const r = await unit.execute({ cdb, dataOut: list });
      expect(r.status).toBe(0);
      return () => {
        for (const e of o.extents) range(e.lba, e.blocks).fill(0);
      };
    }
    case 'compareAndWrite': {
      const verify = range(o.lba, o.blocks).slice();
      const mismatchAt = (o.seed * 13) % verify.length;
      if (!o.match) verify[mismatchAt] = verify[mismatchAt]! ^ 0xff;
      const data = pattern(o.blocks * BLOCK, o.seed);
      const cdb = new Uint8Array(16);
      cdb[0] = 0x89;
      putBe64(cdb, 2, o.lba);
      cdb[13] = o.blocks;
      const r = await unit.execute({ cdb, dataOut: new Uint8Array([...verify, ...data]) });
      if (!o.match) {
        expect(r.status).toBe(2);
        const sense = decodeSense(r.sense ?? new Uint8Array(0));
        expect(sense.key).toBe(0x0e); // MISCOMPARE
        expect(sense.information).toBe(mismatchAt);
        return () => {};
      }
      expect(r.status).toBe(0);
      return () => range(o.lba, o.blocks).set(data);
    }
    case 'orWrite': {
      const data = pattern(o.blocks * BLOCK, o.seed);
      const r = await unit.execute({ cdb: cdb16(0x8b, o.lba, o.blocks), dataOut: data });
      expect(r.status).toBe(0);
      return () => {
        const target = range(o.lba, o.blocks);
        for (let i = 0; i < target.length; i++) target[i]! |= data[i]!;
      };
    }
    case 'verify': {
      // VERIFY(12) BYTCHK 01b against the model: GOOD exactly when the medium matches it.
      const r = await unit.execute({
        cdb: compare12(0xaf, o.lba, o.blocks),
        dataOut: range(o.lba, o.blocks).slice(),
      });
      expect(r.status).toBe(0);
      return () => {};
    }
    case 'prefetch': {
      const r = await unit.execute({ cdb: cdb16(0x90, o.lba, o.blocks) });
      expect(r.status).toBe(0x04); // CONDITION MET: the memory backend holds every block
      return () => {};
    }
    case 'read': {
      const expected = range(o.lba, o.blocks).slice();
      const r = await unit.execute({ cdb: cdb10(0x28, o.lba, o.blocks), dataInLength: o.blocks * BLOCK });
      expect(r.status).toBe(0);
      expect(Buffer.from(r.dataIn!).equals(Buffer.from(expected))).toBe(true);
      return () => {};
    }
    case 'format': {
      const r = await unit.execute({ cdb: Uint8Array.from([0x04, 0, 0, 0, 0, 0]) });
      expect(r.status).toBe(0);
      return () => model.fill(0);
    }
    case 'overwrite': {
      const list = encodeOverwriteParameters({
        invert: o.invert,
        test: 0,
        count: o.count,
        pattern: o.pattern,
      });
      const cdb = Uint8Array.of(0x48, 0x01, 0, 0, 0, 0, 0, list.length >> 8, list.length & 0xff, 0);
      const r = await unit.execute({ cdb, dataOut: list });
      expect(r.status).toBe(0);
      // Every block holds the pattern repeated from its first byte; the last pass is never inverted.
      return () => {
        for (let i = 0; i < model.length; i++) model[i] = o.pattern[(i % BLOCK) % o.pattern.length]!;
      };
    }
    case 'blockErase': {
      const r = await unit.execute({ cdb: Uint8Array.of(0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0) });
      expect(r.status).toBe(0);
      return () => model.fill(0);
    }
  }
};

describe('model-based: the medium matches a reference byte array', () => {
  it('random batches of concurrent commands', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { minLength: 1, maxLength: 4 }), { maxLength: 10 }),
        async (batches) => {
          const backend = new MemoryBackend({ blockSize: BLOCK, blockCount: BLOCKS, chunkBlocks: 4 });
          const unit = new LogicalUnit({
            backend,
            powerOnUnitAttention: false,
            config: { maxCompareAndWriteBlocks: 2, maxAtomicTransferBlocks: 8 },
          });
          const model = new Uint8Array(BLOCK * BLOCKS);
          for (const batch of batches) {
            const updates = await Promise.all(disjoint(batch).map((o) => issue(unit, model, o)));
            for (const apply of updates) apply();
          }
          const all = await unit.execute({ cdb: cdb10(0x28, 0, BLOCKS), dataInLength: BLOCK * BLOCKS });
          expect(Buffer.from(all.dataIn!).equals(Buffer.from(model))).toBe(true);
        },
      ),
      { numRuns: 80 },
    );
  });
});
