import { expect } from 'vitest';
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

/** A block filled with a recognisable pattern. */
export function pattern(bytes: number, seed: number): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}
