import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryBackend } from './backends/memory.js';
import { ScsiStatus } from './core/status.js';
import { LogicalUnit } from './core/unit.js';
import { defaultOpcodeTable } from './opcodes/index.js';
import { SenseKey } from './sense/reasons.js';
import { decodeSense } from './sense/sense.js';

const SAM_STATUS = new Set<number>(Object.values(ScsiStatus));
const KNOWN_OPCODES = [
  ...new Set(
    defaultOpcodeTable()
      .entries()
      .map((e) => e.opcode),
  ),
];

/** A CDB: random bytes, half the time starting with an implemented opcode. */
const cdbArbitrary = fc
  .tuple(
    fc.uint8Array({ minLength: 1, maxLength: 260 }),
    fc.option(fc.constantFrom(...KNOWN_OPCODES), { nil: undefined }),
  )
  .map(([bytes, opcode]) => {
    if (opcode !== undefined) bytes[0] = opcode;
    return bytes;
  });

const withTimeout = <T>(promise: Promise<T>, ms: number): Promise<T> =>
  Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)),
  ]);

describe('any CDB gets a well-formed answer (property)', () => {
  it('status from the SAM set, decodable sense on CHECK CONDITION, Data-In within bounds; never a throw or hang', async () => {
    await fc.assert(
      fc.asyncProperty(
        cdbArbitrary,
        fc.uint8Array({ maxLength: 4096 }),
        fc.option(fc.nat({ max: 70_000 }), { nil: undefined }),
        fc.boolean(),
        fc.constantFrom(undefined, 'a', 'b'),
        async (cdb, dataOut, dataInLength, descriptorSense, nexus) => {
          const unit = new LogicalUnit({
            backend: new MemoryBackend({ blockSize: 512, blockCount: 64 }),
            descriptorSense,
            // Every command offered: WRITE ATOMIC(16) only exists with an atomic length.
            config: { maxAtomicTransferBlocks: 8 },
          });
          const result = await withTimeout(
            Promise.resolve(unit.execute({ cdb, dataOut, dataInLength, nexus })),
            5000,
          );
          expect(SAM_STATUS.has(result.status)).toBe(true);
          if (result.status === ScsiStatus.CHECK_CONDITION) {
            expect(result.sense).toBeDefined();
            expect(result.sense!.length).toBeLessThanOrEqual(96);
            const sense = decodeSense(result.sense!);
            expect(sense.key).toBeGreaterThan(0);
            // SAM-5: Data-In may precede CHECK CONDITION only for a RECOVERED ERROR (READ DEFECT DATA).
            if (sense.key !== SenseKey.RECOVERED_ERROR) expect(result.dataIn).toBeUndefined();
          } else {
            expect(result.sense).toBeUndefined();
          }
          if (dataInLength !== undefined) {
            expect(result.dataIn?.length ?? 0).toBeLessThanOrEqual(dataInLength);
            // The residual is a Data-In residual: none for a command without Data-In.
            const expected = result.direction === 'out' ? 0 : dataInLength - (result.dataIn?.length ?? 0);
            expect(result.residual).toBe(expected);
          }
          expect(result.residual).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('a second command on the same nexus after any first one still answers', async () => {
    const unit = new LogicalUnit({ backend: new MemoryBackend({ blockSize: 4096, blockCount: 16 }) });
    await fc.assert(
      fc.asyncProperty(cdbArbitrary, fc.uint8Array({ maxLength: 8192 }), async (cdb, dataOut) => {
        const first = await withTimeout(
          Promise.resolve(unit.execute({ cdb, dataOut, dataInLength: 512 })),
          5000,
        );
        expect(SAM_STATUS.has(first.status)).toBe(true);
        const tur = await withTimeout(Promise.resolve(unit.execute({ cdb: new Uint8Array(6) })), 5000);
        expect(SAM_STATUS.has(tur.status)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
