import { expect } from 'vitest';
import { MemoryBackend } from '../../backends/memory.js';
import type { BlockBackend } from '../../core/backend.js';
import { putBe16, putBe32 } from '../../core/bytes.js';
import type { CommandResult, HandlerOutput, OpcodeEntry } from '../../core/command.js';
import { ScsiStatus } from '../../core/status.js';
import { LogicalUnit, type LogicalUnitOptions } from '../../core/unit.js';
import { type SenseReasonName, SenseReasons } from '../../sense/reasons.js';
import { type DecodedSense, decodeSense } from '../../sense/sense.js';

/** Test helpers for the SBC-extras suites: a unit over a MemoryBackend and one-call command execution. */

export interface TestUnitOptions extends Partial<Omit<LogicalUnitOptions, 'backend'>> {
  readonly blocks?: number;
  readonly blockSize?: number;
  readonly thin?: boolean;
  readonly backend?: BlockBackend;
}

export const makeUnit = (options: TestUnitOptions = {}): { unit: LogicalUnit; backend: BlockBackend } => {
  const backend =
    options.backend ??
    new MemoryBackend({
      blockSize: options.blockSize ?? 512,
      blockCount: options.blocks ?? 2048,
      thin: options.thin ?? true,
      chunkBlocks: 8,
    });
  const unit = new LogicalUnit({ powerOnUnitAttention: false, ...options, backend });
  return { unit, backend };
};

export interface Outcome extends CommandResult {
  readonly data: Uint8Array;
  readonly decoded?: DecodedSense;
}

export const run = async (
  unit: LogicalUnit,
  cdb: Uint8Array | readonly number[],
  options: { dataOut?: Uint8Array; dataInLength?: number; nexus?: string; signal?: AbortSignal } = {},
): Promise<Outcome> => {
  const result = await unit.execute({
    cdb: cdb instanceof Uint8Array ? cdb : Uint8Array.from(cdb),
    dataOut: options.dataOut,
    dataInLength: options.dataInLength ?? 0,
    nexus: options.nexus,
    signal: options.signal,
  });
  return {
    ...result,
    data: result.dataIn ?? new Uint8Array(0),
    decoded: result.sense === undefined ? undefined : decodeSense(result.sense),
  };
};

export const expectGood = (outcome: Outcome): void => {
  expect(outcome.decoded, 'sense').toBeUndefined();
  expect(outcome.status).toBe(ScsiStatus.GOOD);
};

/** Assert CHECK CONDITION with this reason and, when given, field pointer / INFORMATION. */
export const expectCheck = (
  outcome: Outcome,
  reason: SenseReasonName,
  details: { byte?: number; bit?: number; inCdb?: boolean; information?: number } = {},
): DecodedSense => {
  expect(outcome.status).toBe(ScsiStatus.CHECK_CONDITION);
  const sense = outcome.decoded!;
  const expected = SenseReasons[reason];
  expect({ key: sense.key, asc: sense.asc, ascq: sense.ascq }).toEqual({
    key: expected.key,
    asc: expected.asc,
    ascq: expected.ascq,
  });
  if (details.byte !== undefined) {
    const pointer: Record<string, unknown> = { inCdb: details.inCdb ?? true, byte: details.byte };
    if (details.bit !== undefined) pointer.bit = details.bit;
    expect(sense.fieldPointer).toEqual(pointer);
  }
  if (details.information !== undefined) expect(Number(sense.information)).toBe(details.information);
  return sense;
};

/** A block filled with `value` (or a pattern derived from `seed` when value is a function). */
export const filled = (bytes: number, value: number | ((i: number) => number)): Uint8Array => {
  const out = new Uint8Array(bytes);
  if (typeof value === 'number') out.fill(value);
  else for (let i = 0; i < bytes; i++) out[i] = value(i) & 0xff;
  return out;
};

export const readBack = (backend: BlockBackend, lba: number, blocks: number): Uint8Array => {
  const out = new Uint8Array(blocks * backend.blockSize);
  const pending = backend.read(lba, out);
  if (pending instanceof Promise) throw new Error('readBack needs a synchronous backend');
  return out;
};

/** A 10-byte READ/WRITE-style CDB: opcode, 32-bit LBA at byte 2, 16-bit block count at byte 7. */
export const cdb10 = (opcode: number, lba: number, blocks: number): Uint8Array => {
  const cdb = new Uint8Array(10);
  cdb[0] = opcode;
  putBe32(cdb, 2, lba);
  putBe16(cdb, 7, blocks);
  return cdb;
};

/** Run an entry's handler directly, past the executor's checks (to reach a race they prevent). */
export const callHandler = <F>(
  entry: OpcodeEntry<F>,
  unit: LogicalUnit,
  cdb: Uint8Array,
): Promise<HandlerOutput> =>
  Promise.resolve(
    entry.handler({
      cdb,
      fields: entry.decode(cdb),
      dataOut: new Uint8Array(0),
      dataOutSegments: undefined,
      dataInLength: 0,
      nexus: 'x',
      signal: undefined,
      unit,
    }),
  );

/** Byte equality without the cost of a deep-equality diff on large buffers. */
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((value, i) => value === b[i]);

/** A backend over `inner` whose reads and writes each wait a millisecond: widens race windows. */
export const slowBackend = (inner: MemoryBackend): BlockBackend => ({
  blockSize: inner.blockSize,
  blockCount: inner.blockCount,
  read: async (lba, into) => {
    await new Promise((r) => setTimeout(r, 1));
    inner.read(lba, into);
  },
  write: async (lba, data) => {
    await new Promise((r) => setTimeout(r, 1));
    inner.write(lba, data);
  },
  flush: () => {},
});

/** A backend over `inner` that records the FUA option of every write in `seen`. */
export const fuaRecorder = (inner: MemoryBackend): { backend: BlockBackend; seen: boolean[] } => {
  const seen: boolean[] = [];
  const backend: BlockBackend = {
    blockSize: inner.blockSize,
    blockCount: inner.blockCount,
    read: inner.read.bind(inner),
    write: (lba, data, options) => {
      seen.push(options.fua);
      inner.write(lba, data);
    },
    flush: () => {},
  };
  return { backend, seen };
};
