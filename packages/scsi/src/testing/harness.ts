import { expect, it } from 'vitest';
import { MemoryBackend, type MemoryBackendOptions } from '../backends/memory.js';
import type { BlockBackend } from '../core/backend.js';
import type { CommandRequest, CommandResult } from '../core/command.js';
import { ScsiStatus } from '../core/status.js';
import { LogicalUnit, type LogicalUnitOptions } from '../core/unit.js';
import type { SenseReasonName } from '../sense/reasons.js';
import { SenseReasons } from '../sense/reasons.js';
import { type DecodedSense, decodeSense } from '../sense/sense.js';

/** Test helpers shared by the package's tests (not part of the public API). */

export interface TestUnitOptions extends Omit<Partial<LogicalUnitOptions>, 'backend'> {
  readonly backend?: BlockBackend;
  readonly memory?: Partial<MemoryBackendOptions>;
}

/** A unit over a MemoryBackend (512 x 2048 by default) with the power-on UA already off. */
export function makeUnit(options: TestUnitOptions = {}): { unit: LogicalUnit; backend: BlockBackend } {
  const backend =
    options.backend ?? new MemoryBackend({ blockSize: 512, blockCount: 2048, ...options.memory });
  const unit = new LogicalUnit({ powerOnUnitAttention: false, ...options, backend });
  return { unit, backend };
}

export type CdbLike = Uint8Array | readonly number[];

export function run(
  unit: LogicalUnit,
  cdb: CdbLike,
  request: Omit<CommandRequest, 'cdb'> = {},
): Promise<CommandResult> {
  return Promise.resolve(
    unit.execute({ ...request, cdb: cdb instanceof Uint8Array ? cdb : Uint8Array.from(cdb) }),
  );
}

export function senseOf(result: CommandResult): DecodedSense {
  expect(result.status).toBe(ScsiStatus.CHECK_CONDITION);
  expect(result.sense).toBeDefined();
  return decodeSense(result.sense!);
}

/** Assert CHECK CONDITION with the reason (and, when given, the field pointer / information). */
export function expectCheck(
  result: CommandResult,
  reason: SenseReasonName,
  extra: { byte?: number; bit?: number; inCdb?: boolean; information?: number | bigint } = {},
): DecodedSense {
  const sense = senseOf(result);
  const r = SenseReasons[reason];
  expect({ key: sense.key, asc: sense.asc, ascq: sense.ascq }).toEqual({
    key: r.key,
    asc: r.asc,
    ascq: r.ascq,
  });
  if (extra.byte !== undefined) {
    expect(sense.fieldPointer?.byte).toBe(extra.byte);
    expect(sense.fieldPointer?.inCdb).toBe(extra.inCdb ?? true);
    expect(sense.fieldPointer?.bit).toBe(extra.bit);
  }
  if (extra.information !== undefined) expect(sense.information).toBe(extra.information);
  expect(result.dataIn).toBeUndefined();
  return sense;
}

export function expectGood(result: CommandResult): Uint8Array {
  if (result.status !== ScsiStatus.GOOD && result.sense) {
    const s = decodeSense(result.sense);
    throw new Error(
      `expected GOOD, got CHECK CONDITION ${s.key}/${s.asc.toString(16)}/${s.ascq.toString(16)}`,
    );
  }
  expect(result.status).toBe(ScsiStatus.GOOD);
  return result.dataIn ?? new Uint8Array(0);
}

/** A field of a CDB for `cdbWith`: byte offset, size in bytes, big-endian value. */
export type CdbField = readonly [offset: number, size: 1 | 2 | 4 | 8, value: number | bigint];

/** A `length`-byte CDB: the opcode, then the fields (all other bytes zero). */
export function cdbWith(length: number, opcode: number, ...fields: readonly CdbField[]): Uint8Array {
  const cdb = new Uint8Array(length);
  const view = new DataView(cdb.buffer);
  cdb[0] = opcode;
  for (const [offset, size, value] of fields) {
    if (size === 8) view.setBigUint64(offset, BigInt(value));
    else if (size === 4) view.setUint32(offset, Number(value));
    else if (size === 2) view.setUint16(offset, Number(value));
    else view.setUint8(offset, Number(value));
  }
  return cdb;
}

/** A block filled with a recognisable pattern. */
export function pattern(bytes: number, seed: number): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

/**
 * A named test vector: one command on a fresh unit and the answer the standard requires,
 * GOOD (the default), CONDITION MET, or CHECK CONDITION with the reason and, when given,
 * the field pointer and INFORMATION.
 */
export interface CommandVector {
  readonly name: string;
  readonly cdb: CdbLike;
  readonly dataOut?: Uint8Array;
  readonly dataInLength?: number;
  readonly status?: 'GOOD' | 'CONDITION_MET';
  readonly check?: SenseReasonName;
  readonly byte?: number;
  readonly bit?: number;
  readonly information?: number;
  /** Data-In the answer must carry (GOOD, or a RECOVERED ERROR's data). */
  readonly dataIn?: readonly number[];
}

/** One `it` per vector, each on a new unit from `unit` (default: makeUnit()). */
export function itAnswers(
  vectors: readonly CommandVector[],
  unit: () => LogicalUnit = () => makeUnit().unit,
): void {
  for (const v of vectors) {
    it(v.name, async () => {
      const result = await run(unit(), v.cdb, { dataOut: v.dataOut, dataInLength: v.dataInLength });
      if (v.check !== undefined) {
        const sense = senseOf(result);
        const r = SenseReasons[v.check];
        expect({ key: sense.key, asc: sense.asc, ascq: sense.ascq }).toEqual({
          key: r.key,
          asc: r.asc,
          ascq: r.ascq,
        });
        if (v.byte !== undefined)
          expect(sense.fieldPointer).toEqual({
            inCdb: true,
            byte: v.byte,
            ...(v.bit === undefined ? {} : { bit: v.bit }),
          });
        if (v.information !== undefined) expect(sense.information).toBe(v.information);
        // Only a RECOVERED ERROR may come with Data-In, and then the vector names it.
        if (v.dataIn === undefined) expect(result.dataIn).toBeUndefined();
      } else {
        expect(result.sense).toBeUndefined();
        expect(result.status).toBe(ScsiStatus[v.status ?? 'GOOD']);
      }
      if (v.dataIn !== undefined) expect([...(result.dataIn ?? [])]).toEqual(v.dataIn);
    });
  }
}

/**
 * WRITE SAME(16) with UNMAP=1 over written blocks, a zero block and then NDOB, on a unit
 * that advertises LBPRZ (READ CAPACITY(16)): READ(16) must return zeros (SBC-4 4.7.3.5),
 * the blocks around the range untouched. `lba`/`blocks` should cut allocation units.
 */
export async function expectUnmappedReadsZero(
  backend: BlockBackend,
  lba: number,
  blocks: number,
): Promise<void> {
  const unit = new LogicalUnit({ backend, powerOnUnitAttention: false });
  const bs = backend.blockSize;
  const cdb16 = (opcode: number, at: number, count: number, byte1 = 0) =>
    cdbWith(16, opcode, [1, 1, byte1], [2, 8, at], [10, 4, count]);
  const capacity = expectGood(await run(unit, [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]));
  expect(capacity[14]! & 0xc0, 'LBPME and LBPRZ').toBe(0xc0);
  const span = blocks + 2;
  expectGood(
    await run(unit, cdb16(0x8a, lba - 1, span), { dataOut: pattern(span * bs, 9).map((b) => b | 1) }),
  );
  const half = Math.floor(blocks / 2);
  expectGood(await run(unit, cdb16(0x93, lba, half, 0x08), { dataOut: new Uint8Array(bs) }));
  expectGood(await run(unit, cdb16(0x93, lba + half, blocks - half, 0x08 | 0x01)));
  const back = expectGood(await run(unit, cdb16(0x88, lba - 1, span), { dataInLength: span * bs }));
  expect(back.subarray(bs, (blocks + 1) * bs).every((b) => b === 0)).toBe(true);
  expect(back.subarray(0, bs).every((b) => b !== 0)).toBe(true);
  expect(back.subarray((blocks + 1) * bs).every((b) => b !== 0)).toBe(true);
}
