import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { putBe16, putBe32 } from '../core/bytes.js';
import { FormatState, formatCommands, parseFormatParameters } from './format.js';
import { callHandler, expectCheck, expectGood, filled, makeUnit, readBack, run } from './testing/harness.js';

const FMTDATA = 0x10;
const LONGLIST = 0x20;
const format = (flags = 0) => [0x04, flags, 0, 0, 0, 0];
const shortHeader = (flags: number, defectLength = 0) => {
  const h = new Uint8Array(4);
  h[1] = flags;
  putBe16(h, 2, defectLength);
  return h;
};
const FOV = 0x80;
const IMMED = 0x02;
const write10 = (lba: number, blocks: number) => {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x2a;
  putBe32(cdb, 2, lba);
  putBe16(cdb, 7, blocks);
  return cdb;
};
const requestSense = [0x03, 0, 0, 0, 252, 0];
const tur = [0, 0, 0, 0, 0, 0];

/** A MemoryBackend whose writeZeroes waits for the test to release it, chunk by chunk. */
const gatedBackend = (blocks: number) => {
  const inner = new MemoryBackend({ blockSize: 512, blockCount: blocks, thin: false });
  const gates: Array<() => void> = [];
  const backend = {
    blockSize: 512,
    blockCount: blocks,
    read: inner.read.bind(inner),
    write: inner.write.bind(inner),
    flush: () => {},
    writeZeroes: async (lba: number, n: number) => {
      await new Promise<void>((resolve) => gates.push(resolve));
      inner.writeZeroes(lba, n);
    },
  };
  const step = async () => {
    while (gates.length === 0) await new Promise((r) => setTimeout(r, 1));
    gates.shift()!();
  };
  return { inner, backend, step };
};

describe('FORMAT UNIT', () => {
  it('FMTDATA=0 zeroes the whole medium and clears the mapping', async () => {
    const { unit, backend } = makeUnit({ blocks: 4096 });
    expectGood(await run(unit, write10(0, 8), { dataOut: filled(4096, 0xab) }));
    expectGood(await run(unit, write10(4000, 8), { dataOut: filled(4096, 0xcd) }));
    expectGood(await run(unit, format()));
    expect(readBack(backend, 0, 4096).every((b) => b === 0)).toBe(true);
    expect(backend.mappingStatus!(0, 4096)).toEqual({ lba: 0, blocks: 4096, state: 'deallocated' });
    expect(unit.format.active).toBe(false);
  });

  it('FMTDATA=1 with a short header (FOV=0, no defect list) formats', async () => {
    const { unit, backend } = makeUnit({ blocks: 64 });
    expectGood(await run(unit, write10(0, 1), { dataOut: filled(512, 1) }));
    expectGood(await run(unit, format(FMTDATA), { dataOut: shortHeader(0) }));
    expect(readBack(backend, 0, 1).every((b) => b === 0)).toBe(true);
  });

  it('FMTDATA=1 with the long header formats', async () => {
    const { unit } = makeUnit({ blocks: 64 });
    expectGood(await run(unit, format(FMTDATA | LONGLIST), { dataOut: new Uint8Array(8) }));
  });

  it('a backend with neither discard nor writeZeroes is zeroed with writes', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 3000, thin: false });
    inner.write(0, filled(512 * 3000, 5), { fua: false });
    const plain = {
      blockSize: 512,
      blockCount: 3000,
      read: inner.read.bind(inner),
      write: inner.write.bind(inner),
      flush: () => {},
    };
    const { unit } = makeUnit({ backend: plain });
    expectGood(await run(unit, format()));
    expect(readBack(inner, 0, 3000).every((b) => b === 0)).toBe(true);
  });

  it('FMTPINFO non-zero is INVALID FIELD IN CDB (no protection information)', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, format(0x40)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 7 });
  });

  it('obsolete bytes 3-4 are INVALID FIELD IN CDB', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, [0x04, 0, 0, 1, 0, 0]), 'INVALID_FIELD_IN_CDB', { byte: 3, bit: 0 });
  });

  it.each([
    ['PROTECTION FIELD USAGE', [0x01, 0, 0, 0], 0, 2],
    ['reserved header bits', [0x08, 0, 0, 0], 0, 7],
    ['DPRY without FOV', [0, 0x40, 0, 0], 1, 6],
    ['IP (initialization pattern)', [0, FOV | 0x08, 0, 0], 1, 3],
    ['obsolete bit 2', [0, FOV | 0x04, 0, 0], 1, 2],
  ])('%s in the header is INVALID FIELD IN PARAMETER LIST', async (_name, header, byte, bit) => {
    const { unit } = makeUnit();
    expectCheck(
      await run(unit, format(FMTDATA), { dataOut: Uint8Array.from(header) }),
      'INVALID_FIELD_IN_PARAMETER_LIST',
      { inCdb: false, byte, bit },
    );
  });

  it('a defect list is INVALID FIELD IN PARAMETER LIST at its length', async () => {
    expect(() => parseFormatParameters(shortHeader(0, 8), false)).toThrow(
      expect.objectContaining({ reason: 'INVALID_FIELD_IN_PARAMETER_LIST' }),
    );
    const long = new Uint8Array(8);
    putBe32(long, 4, 8);
    expect(() => parseFormatParameters(long, true)).toThrow(
      expect.objectContaining({ details: { fieldPointer: { inCdb: false, byte: 4 } } }),
    );
    const reserved = new Uint8Array(8);
    reserved[3] = 0x10;
    expect(() => parseFormatParameters(reserved, true)).toThrow(
      expect.objectContaining({ details: { fieldPointer: { inCdb: false, byte: 3, bit: 4 } } }),
    );
  });

  it('a short parameter list is PARAMETER LIST LENGTH ERROR', () => {
    expect(() => parseFormatParameters(new Uint8Array(2), false)).toThrow(
      expect.objectContaining({ reason: 'PARAMETER_LIST_LENGTH_ERROR' }),
    );
    expect(() => parseFormatParameters(new Uint8Array(4), true)).toThrow(
      expect.objectContaining({ reason: 'PARAMETER_LIST_LENGTH_ERROR' }),
    );
  });

  it('DPRY/DCRT/STPF with FOV=1 are accepted (there are no defects to manage)', () => {
    expect(parseFormatParameters(shortHeader(FOV | 0x70 | IMMED), false)).toEqual({ immediate: true });
  });

  it('IMMED returns GOOD at once; meanwhile other commands get NOT READY / FORMAT IN PROGRESS with progress', async () => {
    const { inner, backend, step } = gatedBackend(3 * 2048);
    inner.write(0, filled(512, 1), { fua: false });
    const { unit } = makeUnit({ backend });
    expectGood(await run(unit, format(FMTDATA), { dataOut: shortHeader(FOV | IMMED) }));
    expect(unit.format.active).toBe(true);
    await step(); // first of three 1 MiB chunks
    await new Promise((r) => setTimeout(r, 1));
    const busy = await run(unit, tur);
    const sense = expectCheck(busy, 'NOT_READY_FORMAT_IN_PROGRESS');
    expect(sense.progress).toBe(Math.floor(0x10000 / 3));
    const rs = await run(unit, requestSense, { dataInLength: 252 });
    expect(rs.status).toBe(0);
    expect(rs.data[12]).toBe(0x04);
    expect(rs.data[13]).toBe(0x04);
    await step();
    await step();
    while (unit.format.active) await new Promise((r) => setTimeout(r, 1));
    expectGood(await run(unit, tur));
    expect(readBack(inner, 0, 1).every((b) => b === 0)).toBe(true);
  });

  it('without IMMED the command completes when the medium is zeroed', async () => {
    const { backend, step } = gatedBackend(2048);
    const { unit } = makeUnit({ backend });
    const done = run(unit, format());
    await step();
    expectGood(await done);
    expect(unit.format.progress).toBe(0);
  });

  it('a failing background format is logged and kept in FormatState.lastError', async () => {
    const errors: unknown[] = [];
    const failing = {
      blockSize: 512,
      blockCount: 64,
      read: () => {},
      write: () => {},
      flush: () => {},
      writeZeroes: () => Promise.reject(new Error('zeroing failed')),
    };
    const { unit } = makeUnit({
      backend: failing,
      logger: { debug() {}, warn() {}, error: (o) => errors.push(o) },
    });
    expectGood(await run(unit, format(FMTDATA), { dataOut: shortHeader(FOV | IMMED) }));
    while (unit.format.active) await new Promise((r) => setTimeout(r, 1));
    expect(errors.length).toBe(1);
    expect((unit.format as FormatState).lastError).toBeDefined();
  });

  it('after a failed background format, medium access is MEDIUM FORMAT CORRUPTED until a format succeeds', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64, thin: false });
    let failures = 1;
    const backend = {
      blockSize: 512,
      blockCount: 64,
      read: inner.read.bind(inner),
      write: inner.write.bind(inner),
      flush: () => {},
      writeZeroes: (lba: number, n: number) =>
        failures-- > 0
          ? Promise.reject(new Error('zeroing failed'))
          : Promise.resolve(inner.writeZeroes(lba, n)),
    };
    const { unit } = makeUnit({ backend });
    const read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    expectGood(await run(unit, format(FMTDATA), { dataOut: shortHeader(FOV | IMMED) }));
    while (unit.format.active) await new Promise((r) => setTimeout(r, 1));
    expect(unit.format.corrupted).toBe(true);
    const sense = expectCheck(await run(unit, read10), 'MEDIUM_FORMAT_CORRUPTED');
    expect([sense.key, sense.asc, sense.ascq]).toEqual([0x3, 0x31, 0x00]);
    expectCheck(await run(unit, write10(0, 1), { dataOut: filled(512, 1) }), 'MEDIUM_FORMAT_CORRUPTED');
    expectCheck(await run(unit, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 'MEDIUM_FORMAT_CORRUPTED');
    // TEST UNIT READY reports the medium state; INQUIRY and REQUEST SENSE still run.
    expectCheck(await run(unit, tur), 'MEDIUM_FORMAT_CORRUPTED');
    expectGood(await run(unit, [0x12, 0, 0, 0, 36, 0]));
    expectGood(await run(unit, requestSense));
    // A new FORMAT UNIT is allowed and, succeeding, makes the medium usable again.
    expectGood(await run(unit, format()));
    expect(unit.format.corrupted).toBe(false);
    const after = await run(unit, read10, { dataInLength: 512 });
    expectGood(after);
    expect(after.dataIn?.length).toBe(512);
    expect(after.dataIn?.every((b) => b === 0)).toBe(true);
  });

  it('a failing foreground format also leaves the medium format corrupted', async () => {
    const failing = {
      blockSize: 512,
      blockCount: 64,
      read: () => {},
      write: () => {},
      flush: () => {},
      writeZeroes: () => {
        throw new Error('zeroing failed');
      },
    };
    const { unit } = makeUnit({ backend: failing });
    expectCheck(await run(unit, format()), 'WRITE_ERROR');
    expectCheck(await run(unit, write10(0, 1), { dataOut: filled(512, 1) }), 'MEDIUM_FORMAT_CORRUPTED');
  });

  it('a failing foreground format is MEDIUM ERROR / WRITE ERROR', async () => {
    const failing = {
      blockSize: 512,
      blockCount: 64,
      read: () => {},
      write: () => {},
      flush: () => {},
      writeZeroes: () => {
        throw new Error('zeroing failed');
      },
    };
    const { unit } = makeUnit({ backend: failing });
    expectCheck(await run(unit, format()), 'WRITE_ERROR', { information: 0 });
    expect(unit.format.active).toBe(false);
  });

  it('a read-only unit refuses FORMAT UNIT with WRITE PROTECTED', async () => {
    const { unit } = makeUnit({ readOnly: true });
    expectCheck(await run(unit, format()), 'WRITE_PROTECTED');
  });

  it('FormatState: begin refuses a second format; advance computes 0..65535; end resets', () => {
    const state = new FormatState();
    expect(state.begin()).toBe(true);
    expect(state.begin()).toBe(false);
    state.advance(1, 4);
    expect(state.progress).toBe(0x4000);
    state.advance(4, 4);
    expect(state.progress).toBe(0xffff);
    state.end();
    expect(state.corrupted).toBe(false);
    expect(state.active).toBe(false);
    expect(state.progress).toBe(0);
    state.advance(1, 2);
    expect(state.progress).toBe(0);
  });

  it('a FORMAT UNIT racing another is NOT READY / FORMAT IN PROGRESS', async () => {
    const { backend, step } = gatedBackend(2048);
    const { unit } = makeUnit({ backend });
    const first = run(unit, format());
    expect(unit.format.active).toBe(true);
    await expect(callHandler(formatCommands[0]!, unit, Uint8Array.from(format()))).rejects.toMatchObject({
      reason: 'NOT_READY_FORMAT_IN_PROGRESS',
    });
    await step();
    expectGood(await first);
  });

  it('CDB round-trips through decode/encode', () => {
    const entry = formatCommands[0]!;
    const bytes = [0x04, 0x3f, 0, 0, 0, 0];
    expect([...entry.encode!(entry.decode(Uint8Array.from(bytes)))]).toEqual(bytes);
  });
});
