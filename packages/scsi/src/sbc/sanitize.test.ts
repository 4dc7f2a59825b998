import { describe, expect, it } from 'vitest';
import { FaultInjectionBackend } from '../backends/fault-injection.js';
import { MemoryBackend } from '../backends/memory.js';
import { BackendWrapper } from '../backends/wrapper.js';
import type { BlockBackend, WriteOptions } from '../core/backend.js';
import { be16, putBe16 } from '../core/bytes.js';
import { ScsiStatus } from '../core/status.js';
import type { LogicalUnit } from '../core/unit.js';
import {
  encodeOverwriteParameters,
  parseOverwriteParameters,
  SanitizeState,
  sanitizeCommands,
} from './sanitize.js';
import {
  callHandler,
  cdb10,
  expectCheck,
  expectGood,
  filled,
  makeUnit,
  readBack,
  run,
} from './testing/harness.js';

const IMMED = 0x80;
const ZNR = 0x40;
const AUSE = 0x20;
const OVERWRITE = 0x01;
const BLOCK_ERASE = 0x02;
const EXIT_FAILURE_MODE = 0x1f;

const sanitize = (serviceAction: number, flags = 0, parameterListLength = 0) => {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x48;
  cdb[1] = flags | serviceAction;
  putBe16(cdb, 7, parameterListLength);
  return cdb;
};
/** OVERWRITE with a parameter list: the CDB's length is the list's. */
const overwrite = (list: Uint8Array, flags = 0) => [sanitize(OVERWRITE, flags, list.length), list] as const;
const pattern = (bytes: number[], count = 1, invert = false) =>
  encodeOverwriteParameters({ invert, test: 0, count, pattern: Uint8Array.from(bytes) });

const tur = [0, 0, 0, 0, 0, 0];
const requestSense = [0x03, 0, 0, 0, 252, 0];
const read10 = (lba: number, blocks: number) => cdb10(0x28, lba, blocks);
const write10 = (lba: number, blocks: number) => cdb10(0x2a, lba, blocks);
const inquiry = [0x12, 0, 0, 0, 96, 0];
const readCapacity10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const modeSense6 = (page: number, subpage = 0) => [0x1a, 0x08, page, subpage, 252, 0];
const logSense = (page: number) => [0x4d, 0, page, 0, 0, 0, 0, 0, 252, 0];
const rsoc = (options: number, opcode = 0, sa = 0) => [
  0xa3,
  0x0c,
  options,
  opcode,
  0,
  sa,
  0,
  0,
  0x10,
  0,
  0,
  0,
];

const run1 = (unit: LogicalUnit, [cdb, dataOut]: readonly [Uint8Array, Uint8Array]) =>
  run(unit, cdb, { dataOut });
const tick = () => new Promise((r) => setTimeout(r, 1));

/** A MemoryBackend whose writes and discards each wait for the test to let them through. */
class GatedBackend extends BackendWrapper {
  readonly #gates: Array<() => void> = [];

  override async write(lba: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    await this.#gate();
    return this.inner.write(lba, data, options);
  }

  protected override async discardInner(lba: number, blocks: number): Promise<void> {
    await this.#gate();
    return this.inner.discard!(lba, blocks);
  }

  #gate(): Promise<void> {
    return new Promise((resolve) => this.#gates.push(resolve));
  }

  /** Let the next waiting call through (waiting for one to arrive). */
  async step(): Promise<void> {
    while (this.#gates.length === 0) await tick();
    this.#gates.shift()!();
    await tick();
  }
}

/** Three 1 MiB sweep chunks of 512-byte blocks. */
const gatedUnit = () => {
  const inner = new MemoryBackend({ blockSize: 512, blockCount: 3 * 2048 });
  const backend = new GatedBackend(inner);
  return { ...makeUnit({ backend }), inner, backend };
};

/** A backend whose first `failures` writes fail. */
const failingWrites = (failures: number, blockCount = 64) => {
  let left = failures;
  const inner = new MemoryBackend({ blockSize: 512, blockCount });
  return { inner, backend: new FaultInjectionBackend(inner, { failWrites: () => left-- > 0 }) };
};

describe('SANITIZE CDB (SBC-4 5.30.1)', () => {
  it.each([2, 3, 4, 5, 6])('reserved byte %i is INVALID FIELD IN CDB at that byte', async (byte) => {
    const { unit } = makeUnit();
    for (const serviceAction of [OVERWRITE, BLOCK_ERASE, EXIT_FAILURE_MODE]) {
      const cdb = sanitize(serviceAction, 0, serviceAction === OVERWRITE ? 8 : 0);
      cdb[byte] = 0x01;
      expectCheck(await run(unit, cdb, { dataOut: pattern([1, 2, 3, 4]) }), 'INVALID_FIELD_IN_CDB', {
        byte,
        bit: 0,
      });
    }
  });

  it.each([
    ['00h (reserved)', 0x00],
    ['03h CRYPTOGRAPHIC ERASE (nothing here encrypts)', 0x03],
    ['04h (reserved)', 0x04],
    ['1Eh (reserved)', 0x1e],
  ])('service action %s is INVALID FIELD IN CDB at the service action', async (_name, serviceAction) => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, sanitize(serviceAction)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 4 });
  });

  it('BLOCK ERASE is not offered without deallocation that reads zeros: INVALID FIELD IN CDB, not reported', async () => {
    const { unit } = makeUnit({ thin: false });
    expectCheck(await run(unit, sanitize(BLOCK_ERASE)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 4 });
    expect([...(await run(unit, rsoc(3, 0x48, BLOCK_ERASE), { dataInLength: 16 })).data]).toEqual([
      0, 1, 0, 0,
    ]);
    // A discard that may leave the old data readable is no erase either.
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const stale = new (class extends BackendWrapper {
      override get unmappedReadsZero(): boolean {
        return false;
      }
    })(inner);
    expectCheck(await run(makeUnit({ backend: stale }).unit, sanitize(BLOCK_ERASE)), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 4,
    });
  });

  it.each([
    ['BLOCK ERASE', BLOCK_ERASE, 8, 8, 3],
    ['BLOCK ERASE', BLOCK_ERASE, 0x100, 7, 0],
    ['EXIT FAILURE MODE', EXIT_FAILURE_MODE, 8, 8, 3],
  ])('%s with PARAMETER LIST LENGTH %i is INVALID FIELD IN CDB (Table 110: 0000h)', async (_n, sa, length, byte, bit) => {
    const { unit } = makeUnit();
    expectCheck(
      await run(unit, sanitize(sa, 0, length), { dataOut: new Uint8Array(length) }),
      'INVALID_FIELD_IN_CDB',
      {
        byte,
        bit,
      },
    );
  });

  it.each([
    0,
    1,
    2,
    3,
    4,
    512 + 5,
    0xffff,
  ])('OVERWRITE with PARAMETER LIST LENGTH %i is INVALID FIELD IN CDB at byte 7 (Table 110: 5..block length + 4)', async (length) => {
    const { unit, backend } = makeUnit();
    backend.write(0, filled(512, 0x11), { fua: false });
    const list = new Uint8Array(length);
    list[0] = 1;
    putBe16(list, 2, Math.max(0, Math.min(length, 512 + 4) - 4));
    expectCheck(await run(unit, sanitize(OVERWRITE, 0, length), { dataOut: list }), 'INVALID_FIELD_IN_CDB', {
      byte: 7,
    });
    expect(readBack(backend, 0, 1)[0]).toBe(0x11);
  });

  it('OVERWRITE with a whole-block pattern (PARAMETER LIST LENGTH = block length + 4) is accepted', async () => {
    const { unit, backend } = makeUnit({ blocks: 64 });
    expectGood(await run1(unit, overwrite(pattern(Array.from({ length: 512 }, (_, i) => i & 0xff)))));
    expect(readBack(backend, 63, 1)[511]).toBe(511 & 0xff);
  });

  it('ZNR is ignored: the unit is not a zoned block device', async () => {
    const { unit, backend } = makeUnit({ blocks: 64 });
    expectGood(await run1(unit, overwrite(pattern([0x5a]), ZNR)));
    expect(readBack(backend, 0, 64).every((b) => b === 0x5a)).toBe(true);
  });

  it('CDB fields round-trip through each service action codec, the service action in place', () => {
    for (const entry of sanitizeCommands) {
      const cdb = sanitize(
        entry.serviceAction!,
        IMMED | ZNR | AUSE,
        entry.serviceAction === OVERWRITE ? 516 : 0,
      );
      cdb[9] = 0x00;
      const fields = entry.decode(cdb);
      expect(fields).toMatchObject({ immediate: true, zonedNoReset: true, allowUnrestrictedExit: true });
      expect([...entry.encode!(fields)]).toEqual([...cdb]);
    }
  });
});

describe('SANITIZE OVERWRITE parameter list (SBC-4 5.30.2.2)', () => {
  it.each([
    ['OVERWRITE COUNT 00h (reserved)', [0x00, 0, 0, 4, 1, 2, 3, 4], 0, 4],
    ['TEST 01b (vendor specific test mode)', [0x21, 0, 0, 4, 1, 2, 3, 4], 0, 6],
    ['TEST 10b', [0x41, 0, 0, 4, 1, 2, 3, 4], 0, 6],
    ['TEST 11b', [0x61, 0, 0, 4, 1, 2, 3, 4], 0, 6],
    ['reserved byte 1', [0x01, 0x10, 0, 4, 1, 2, 3, 4], 1, 4],
  ])('%s is INVALID FIELD IN PARAMETER LIST at that field', async (_name, list, byte, bit) => {
    const { unit } = makeUnit();
    expectCheck(await run1(unit, overwrite(Uint8Array.from(list))), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte,
      bit,
    });
  });

  it.each([
    ['0', 0],
    ['the block length + 1', 513],
  ])('INITIALIZATION PATTERN LENGTH %s is INVALID FIELD IN PARAMETER LIST at byte 2', async (_name, length) => {
    const { unit } = makeUnit();
    const list = new Uint8Array(512 + 4);
    list[0] = 1;
    putBe16(list, 2, length);
    expectCheck(await run1(unit, overwrite(list)), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 2,
    });
  });

  it('a pattern longer than the list is PARAMETER LIST LENGTH ERROR (SPC-5 4.2.5.5); bytes after it are not read', async () => {
    const { unit, backend } = makeUnit({ blocks: 64 });
    const truncated = Uint8Array.of(0x01, 0, 0, 8, 1, 2, 3, 4);
    expectCheck(await run1(unit, overwrite(truncated)), 'PARAMETER_LIST_LENGTH_ERROR');
    const longer = Uint8Array.of(0x01, 0, 0, 2, 0xc3, 0x3c, 0xff, 0xff);
    expectGood(await run1(unit, overwrite(longer)));
    expect([...readBack(backend, 5, 1).subarray(0, 4)]).toEqual([0xc3, 0x3c, 0xc3, 0x3c]);
  });

  it('parse/encode round trip; a list shorter than its header is PARAMETER LIST LENGTH ERROR', () => {
    const p = { invert: true, test: 0, count: 31, pattern: Uint8Array.of(9, 8, 7) };
    expect(parseOverwriteParameters(encodeOverwriteParameters(p), 512)).toEqual(p);
    expect(() => parseOverwriteParameters(new Uint8Array(3), 512)).toThrow(
      expect.objectContaining({ reason: 'PARAMETER_LIST_LENGTH_ERROR' }),
    );
  });
});

describe('SANITIZE operations', () => {
  it('OVERWRITE writes the pattern to every block, restarting it at each block (SBC-4 5.30.2.2)', async () => {
    const { unit, backend } = makeUnit({ blocks: 4096 });
    backend.write(0, filled(512, 0x61), { fua: false });
    backend.write(4095, filled(512, 0x61), { fua: false });
    expectGood(await run1(unit, overwrite(pattern([1, 2, 3]))));
    for (const lba of [0, 2047, 2048, 4095]) {
      const block = readBack(backend, lba, 1);
      expect([block[0], block[1], block[2], block[3], block[510], block[511]], `LBA ${lba}`).toEqual([
        1, 2, 3, 1, 1, 2,
      ]);
    }
    const read = await run(unit, read10(4095, 1), { dataInLength: 512 });
    expectGood(read);
    expect(read.data[0]).toBe(1);
  });

  it.each([
    [1, false, [0x0f]],
    [2, false, [0x0f, 0x0f]],
    [1, true, [0x0f]],
    [2, true, [0xf0, 0x0f]],
    [3, true, [0x0f, 0xf0, 0x0f]],
  ])('OVERWRITE COUNT %i, INVERT %s: passes write %j (the last one the pattern itself)', async (count, invert, passes) => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    const firstBytes: number[] = [];
    const recording = new (class extends BackendWrapper {
      override write(lba: number, data: Uint8Array, options: WriteOptions) {
        if (lba === 0) firstBytes.push(data[0]!);
        return this.inner.write(lba, data, options);
      }
    })(inner);
    const { unit } = makeUnit({ backend: recording });
    expectGood(await run1(unit, overwrite(pattern([0x0f], count, invert))));
    expect(firstBytes).toEqual(passes);
    expect(readBack(inner, 15, 1).every((b) => b === 0x0f)).toBe(true);
  });

  it('a zero pattern deallocates where unmapped blocks read as zeros (SBC-4 4.11.4), else writes zeroes', async () => {
    const { unit, backend } = makeUnit({ blocks: 64 });
    backend.write(0, filled(64 * 512, 7), { fua: false });
    expectGood(await run1(unit, overwrite(pattern([0, 0, 0, 0]))));
    expect(backend.mappingStatus!(0, 64)).toEqual({ lba: 0, blocks: 64, state: 'deallocated' });
    const thick = new MemoryBackend({ blockSize: 512, blockCount: 64, thin: false });
    thick.write(0, filled(64 * 512, 7), { fua: false });
    expectGood(await run1(makeUnit({ backend: thick }).unit, overwrite(pattern([0]))));
    expect(readBack(thick, 0, 64).every((b) => b === 0)).toBe(true);
  });

  it('BLOCK ERASE deallocates the whole medium, a last partial chunk included; reads are GOOD and zero', async () => {
    const { unit, backend } = makeUnit({ blocks: 2050 });
    backend.write(0, filled(2050 * 512, 0x61), { fua: false });
    expectGood(await run(unit, sanitize(BLOCK_ERASE)));
    expect(backend.mappingStatus!(0, 2050)).toEqual({ lba: 0, blocks: 2050, state: 'deallocated' });
    const read = await run(unit, read10(2049, 1), { dataInLength: 512 });
    expectGood(read);
    expect(read.data.every((b) => b === 0)).toBe(true);
  });

  it('the result is flushed: the cache holds nothing older (SBC-4 4.11.1)', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 16 });
    const calls: string[] = [];
    const observed = new (class extends BackendWrapper {
      override write(lba: number, data: Uint8Array, options: WriteOptions) {
        calls.push('write');
        return this.inner.write(lba, data, options);
      }
      override flush() {
        calls.push('flush');
        return this.inner.flush();
      }
    })(inner);
    expectGood(await run1(makeUnit({ backend: observed }).unit, overwrite(pattern([1]))));
    expect(calls).toEqual(['write', 'flush']);
  });

  it('a successful sanitize makes a format corrupted by a failed FORMAT UNIT whole again', async () => {
    const { backend } = failingWrites(1);
    const { unit } = makeUnit({ backend });
    expectCheck(await run(unit, [0x04, 0, 0, 0, 0, 0]), 'WRITE_ERROR');
    expectCheck(await run(unit, read10(0, 1), { dataInLength: 512 }), 'MEDIUM_FORMAT_CORRUPTED');
    expectGood(await run1(unit, overwrite(pattern([0x77]))));
    expect(unit.format.corrupted).toBe(false);
    expect((await run(unit, read10(0, 1), { dataInLength: 512 })).data[0]).toBe(0x77);
  });

  it('a read-only unit refuses every service action with DATA PROTECT / WRITE PROTECTED (SBC-4 4.11.1)', async () => {
    const { unit } = makeUnit({ readOnly: true });
    expectCheck(await run1(unit, overwrite(pattern([1]))), 'WRITE_PROTECTED');
    expectCheck(await run(unit, sanitize(BLOCK_ERASE)), 'WRITE_PROTECTED');
    expectCheck(await run(unit, sanitize(EXIT_FAILURE_MODE)), 'WRITE_PROTECTED');
  });

  it('a stopped unit refuses the erasing service actions; EXIT FAILURE MODE touches no block', async () => {
    const { unit } = makeUnit();
    expectGood(await run(unit, [0x1b, 0, 0, 0, 0, 0]));
    expectCheck(await run1(unit, overwrite(pattern([1]))), 'NOT_READY_INITIALIZING_COMMAND_REQUIRED');
    expectCheck(await run(unit, sanitize(BLOCK_ERASE)), 'NOT_READY_INITIALIZING_COMMAND_REQUIRED');
    expectGood(await run(unit, sanitize(EXIT_FAILURE_MODE)));
  });

  it('EXIT FAILURE MODE with nothing failed completes without error (SBC-4 5.30.2.5)', async () => {
    const { unit, backend } = makeUnit();
    backend.write(0, filled(512, 3), { fua: false });
    expectGood(await run(unit, sanitize(EXIT_FAILURE_MODE)));
    expect(readBack(backend, 0, 1)[0]).toBe(3);
    expect(unit.sanitize.failed).toBe(false);
  });
});

describe('SANITIZE in progress (SBC-4 4.11.2, 4.11.3)', () => {
  it('IMMED: GOOD at once; commands not allowed during sanitize get NOT READY / SANITIZE IN PROGRESS with progress', async () => {
    const { unit, inner, backend } = gatedUnit();
    inner.write(0, filled(512, 0x61), { fua: false });
    expectGood(await run1(unit, overwrite(pattern([0xee]), IMMED)));
    expect(unit.sanitize.active).toBe(true);
    await backend.step(); // the first of three chunks
    const third = Math.floor(0x10000 / 3);
    expect(expectCheck(await run(unit, tur), 'NOT_READY_SANITIZE_IN_PROGRESS').progress).toBe(third);
    const sense = await run(unit, requestSense, { dataInLength: 252 });
    expectGood(sense);
    expect([sense.data[2], sense.data[12], sense.data[13], sense.data[15], be16(sense.data, 16)]).toEqual([
      0x02,
      0x04,
      0x1b,
      0x80,
      third,
    ]);
    // 4.11.2: these run; everything else waits.
    for (const cdb of [
      inquiry,
      readCapacity10,
      modeSense6(0x08),
      modeSense6(0x0a),
      modeSense6(0x1c),
      rsoc(0),
    ]) {
      expectGood(await run(unit, cdb, { dataInLength: 252 }));
    }
    expectGood(await run(unit, [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], { dataInLength: 16 }));
    expectGood(await run(unit, [0xa3, 0x0d, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0], { dataInLength: 4 }));
    for (const cdb of [
      read10(0, 1),
      write10(0, 1),
      modeSense6(0x3f),
      modeSense6(0x01),
      modeSense6(0x08, 0xff),
      logSense(0x00),
      [0x04, 0, 0, 0, 0, 0],
      sanitize(EXIT_FAILURE_MODE),
      sanitize(BLOCK_ERASE),
    ]) {
      expectCheck(
        await run(unit, cdb, { dataInLength: 512, dataOut: filled(512, 1) }),
        'NOT_READY_SANITIZE_IN_PROGRESS',
      );
    }
    expect(unit.plainIo('').reads).toBe(false);
    await backend.step();
    await backend.step();
    while (unit.sanitize.active) await tick();
    expectGood(await run(unit, tur));
    expect(readBack(inner, 0, 1)[0]).toBe(0xee);
    expect(decodeSenseKey(await run(unit, requestSense, { dataInLength: 252 }))).toEqual([0, 0, 0]);
    expect(unit.plainIo('').reads).toBe(true);
  });

  it('progress counts every pass: one chunk of two passes over two chunks is a quarter', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 2 * 2048 });
    const backend = new GatedBackend(inner);
    const { unit } = makeUnit({ backend });
    expectGood(await run1(unit, overwrite(pattern([1], 2), IMMED)));
    await backend.step();
    expect(unit.sanitize.progress).toBe(0x4000);
    for (let i = 0; i < 3; i++) await backend.step();
    while (unit.sanitize.active) await tick();
    expect(unit.sanitize.progress).toBe(0);
  });

  it('without IMMED the command returns when the medium is sanitized', async () => {
    const { unit, inner, backend } = gatedUnit();
    const done = run(unit, sanitize(BLOCK_ERASE));
    for (let i = 0; i < 3; i++) await backend.step();
    expectGood(await done);
    expect(inner.mappingStatus!(0, 3 * 2048).state).toBe('deallocated');
  });

  it('an aborted SANITIZE ends TASK ABORTED while the operation runs to completion (SBC-4 4.11.3 f)', async () => {
    const { unit, inner, backend } = gatedUnit();
    inner.write(0, filled(512, 0x61), { fua: false });
    const abort = new AbortController();
    const [cdb, dataOut] = overwrite(pattern([0x42]));
    const done = run(unit, cdb, { dataOut, signal: abort.signal });
    await backend.step();
    abort.abort();
    await backend.step();
    await backend.step();
    expect((await done).status).toBe(ScsiStatus.TASK_ABORTED);
    expect(unit.sanitize.failed).toBe(false);
    expect(readBack(inner, 0, 1)[0]).toBe(0x42);
  });

  it('a FORMAT UNIT is refused during a sanitize, and a SANITIZE during a format', async () => {
    const { unit, backend } = gatedUnit();
    expectGood(await run(unit, sanitize(BLOCK_ERASE, IMMED)));
    expectCheck(await run(unit, [0x04, 0, 0, 0, 0, 0]), 'NOT_READY_SANITIZE_IN_PROGRESS');
    for (let i = 0; i < 3; i++) await backend.step();
    while (unit.sanitize.active) await tick();
    const formatting = run(unit, [0x04, 0, 0, 0, 0, 0]);
    expect(unit.format.active).toBe(true);
    expectCheck(await run(unit, sanitize(BLOCK_ERASE)), 'NOT_READY_FORMAT_IN_PROGRESS');
    for (let i = 0; i < 3; i++) await backend.step();
    expectGood(await formatting);
  });

  it('two racing SANITIZE commands: the second is NOT READY / SANITIZE IN PROGRESS', async () => {
    const { unit, backend } = gatedUnit();
    const first = run(unit, sanitize(BLOCK_ERASE));
    const entry = sanitizeCommands.find((e) => e.serviceAction === BLOCK_ERASE)!;
    await expect(callHandler(entry, unit, sanitize(BLOCK_ERASE))).rejects.toMatchObject({
      reason: 'NOT_READY_SANITIZE_IN_PROGRESS',
    });
    for (let i = 0; i < 3; i++) await backend.step();
    expectGood(await first);
  });
});

const decodeSenseKey = (outcome: { data: Uint8Array }) => [
  outcome.data[2]! & 0x0f,
  outcome.data[12],
  outcome.data[13],
];

describe('a failed SANITIZE (SBC-4 4.11.4)', () => {
  it('IMMED=0: the command ends MEDIUM ERROR / SANITIZE COMMAND FAILED; then only the commands allowed during sanitize and SANITIZE run', async () => {
    const { inner, backend } = failingWrites(1);
    const { unit } = makeUnit({ backend });
    const failed = expectCheck(await run1(unit, overwrite(pattern([1]))), 'SANITIZE_COMMAND_FAILED');
    expect([failed.key, failed.asc, failed.ascq]).toEqual([0x3, 0x31, 0x03]);
    expect(unit.sanitize.failed).toBe(true);
    expect((unit.sanitize as SanitizeState).lastError).toBeDefined();
    for (const cdb of [
      read10(0, 1),
      write10(0, 1),
      tur,
      [0x04, 0, 0, 0, 0, 0],
      [0x15, 0x10, 0, 0, 0, 0],
      logSense(0x2f),
      modeSense6(0x3f),
    ]) {
      expectCheck(
        await run(unit, cdb, { dataInLength: 512, dataOut: filled(512, 1) }),
        'SANITIZE_COMMAND_FAILED',
      );
    }
    for (const cdb of [inquiry, readCapacity10, modeSense6(0x08), rsoc(0)]) {
      expectGood(await run(unit, cdb, { dataInLength: 252 }));
    }
    // Polling reports the failure.
    expect(decodeSenseKey(await run(unit, requestSense, { dataInLength: 252 }))).toEqual([0x3, 0x31, 0x03]);
    expect(unit.plainIo('').reads).toBe(false);
    // Restricted completion mode (AUSE=0): EXIT FAILURE MODE and AUSE=1 are refused (SBC-4 5.30.1)...
    expectCheck(await run(unit, sanitize(EXIT_FAILURE_MODE)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 4 });
    expectCheck(await run(unit, sanitize(BLOCK_ERASE, AUSE)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 5 });
    expectCheck(await run1(unit, overwrite(pattern([1]), AUSE)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 5 });
    // ... and a sanitize that succeeds ends it.
    expectGood(await run1(unit, overwrite(pattern([0x24]))));
    expect(unit.sanitize.failed).toBe(false);
    expect((await run(unit, read10(0, 1), { dataInLength: 512 })).data[0]).toBe(0x24);
    expect(readBack(inner, 63, 1)[0]).toBe(0x24);
  });

  it('unrestricted completion mode (AUSE=1): EXIT FAILURE MODE leaves it, as if the operation had succeeded', async () => {
    const { backend } = failingWrites(1);
    const { unit } = makeUnit({ backend });
    expectCheck(await run1(unit, overwrite(pattern([1]), AUSE)), 'SANITIZE_COMMAND_FAILED');
    expectCheck(await run(unit, read10(0, 1), { dataInLength: 512 }), 'SANITIZE_COMMAND_FAILED');
    expectGood(await run(unit, sanitize(EXIT_FAILURE_MODE, AUSE)));
    expect(unit.sanitize.failed).toBe(false);
    expectGood(await run(unit, read10(0, 1), { dataInLength: 512 }));
    expectGood(await run(unit, tur));
  });

  it('IMMED=1: GOOD at once; the failure is logged and kept, and the failure mode follows', async () => {
    const errors: unknown[] = [];
    const { backend } = failingWrites(1);
    const { unit } = makeUnit({ backend, logger: { debug() {}, warn() {}, error: (o) => errors.push(o) } });
    expectGood(await run1(unit, overwrite(pattern([1]), IMMED | AUSE)));
    while (unit.sanitize.active) await tick();
    expect(errors.length).toBe(1);
    expect(unit.sanitize.failed).toBe(true);
    expectCheck(await run(unit, tur), 'SANITIZE_COMMAND_FAILED');
    expectGood(await run(unit, sanitize(EXIT_FAILURE_MODE)));
    expectGood(await run(unit, tur));
  });

  it('a failed BLOCK ERASE is a failed sanitize too', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const { unit } = makeUnit({ backend: new FaultInjectionBackend(inner, { failWrites: [0] }) });
    expectCheck(await run(unit, sanitize(BLOCK_ERASE)), 'SANITIZE_COMMAND_FAILED');
    expect(unit.sanitize.failed).toBe(true);
  });

  it('onStateChange reports the start, the end and the failure mode', async () => {
    const { backend } = failingWrites(1);
    const { unit } = makeUnit({ backend });
    let changes = 0;
    unit.onStateChange(() => changes++);
    expectCheck(await run1(unit, overwrite(pattern([1]), AUSE)), 'SANITIZE_COMMAND_FAILED');
    expect(changes).toBeGreaterThanOrEqual(2);
    const before = changes;
    expectGood(await run(unit, sanitize(EXIT_FAILURE_MODE)));
    expect(changes).toBe(before + 1);
  });
});

describe('SanitizeState', () => {
  it('begin refuses a second operation; end clears the failure; fail keeps the completion mode', () => {
    const state = new SanitizeState();
    expect(state.begin(true)).toBe(true);
    expect(state.begin(false)).toBe(false);
    state.advance(1, 2);
    expect(state.progress).toBe(0x8000);
    const error = new Error('x');
    state.fail(error);
    expect([state.active, state.failed, state.unrestricted, state.lastError, state.progress]).toEqual([
      false,
      true,
      true,
      error,
      0,
    ]);
    expect(state.begin(false)).toBe(true);
    state.end();
    expect([state.failed, state.unrestricted, state.lastError]).toEqual([false, false, undefined]);
  });
});

describe('REPORT SUPPORTED OPERATION CODES for SANITIZE', () => {
  it('one descriptor per offered service action, each with its CDB usage data', async () => {
    const { unit } = makeUnit();
    const usage = async (sa: number) => [...(await run(unit, rsoc(3, 0x48, sa), { dataInLength: 16 })).data];
    expect(await usage(OVERWRITE)).toEqual([0, 3, 0, 10, 0x48, 0xe1, 0, 0, 0, 0, 0, 0xff, 0xff, 0]);
    expect(await usage(BLOCK_ERASE)).toEqual([0, 3, 0, 10, 0x48, 0xe2, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(await usage(EXIT_FAILURE_MODE)).toEqual([0, 3, 0, 10, 0x48, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(await usage(0x03)).toEqual([0, 1, 0, 0]);
  });

  it('a custom backend without discard gets OVERWRITE and EXIT FAILURE MODE only', async () => {
    const plain: BlockBackend = { blockSize: 512, blockCount: 8, read() {}, write() {}, flush() {} };
    const { unit } = makeUnit({ backend: plain });
    const all = (await run(unit, rsoc(0), { dataInLength: 4096 })).data;
    const actions: number[] = [];
    for (let o = 4; o < all.length; o += 8) if (all[o] === 0x48) actions.push(be16(all, o + 2));
    expect(actions).toEqual([OVERWRITE, EXIT_FAILURE_MODE]);
  });
});
