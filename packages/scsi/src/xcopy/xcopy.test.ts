import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { FaultInjectionBackend } from '../backends/fault-injection.js';
import { be16, be32, putBe32 } from '../core/bytes.js';
import type { LogicalUnit } from '../core/unit.js';
import {
  expectCheck,
  expectGood,
  filled,
  makeUnit,
  readBack,
  run,
  sameBytes,
} from '../sbc/testing/harness.js';
import { copyCommands } from './commands.js';
import { CopyManager, CopyManagerError } from './manager.js';
import { type BlockSegmentSpec, encodeExtendedCopyParameters, type ListIdUsage } from './parameters.js';

const xcopyCdb = (length: number) => {
  const cdb = new Uint8Array(16);
  cdb[0] = 0x83;
  putBe32(cdb, 10, length);
  return cdb;
};
const rcr = (serviceAction: number, listId: number, alloc: number) => {
  const cdb = new Uint8Array(16);
  cdb[0] = 0x84;
  cdb[1] = serviceAction;
  cdb[2] = listId;
  putBe32(cdb, 10, alloc);
  return cdb;
};

const copyUnit = (blocks = 256, blockSize = 512) =>
  makeUnit({ blocks, blockSize, config: { extendedCopy: true } }) as {
    unit: LogicalUnit;
    backend: MemoryBackend;
  };

const listFor = (
  units: LogicalUnit[],
  segments: BlockSegmentSpec[],
  extra: { listIdentifier?: number; listIdUsage?: ListIdUsage } = {},
) =>
  encodeExtendedCopyParameters({
    ...extra,
    targets: units.map((u) => ({ designator: u.config.naa, blockLength: u.backend.blockSize })),
    segments,
  });

const copy = (unit: LogicalUnit, list: Uint8Array, nexus?: string) =>
  run(unit, xcopyCdb(list.length), { dataOut: list, nexus });

describe('EXTENDED COPY (LID1)', () => {
  it('copies blocks within one unit (no registration needed)', async () => {
    const { unit, backend } = copyUnit();
    backend.write(
      0,
      filled(512 * 4, (i) => i * 3),
      { fua: false },
    );
    const list = listFor(
      [unit],
      [{ source: 0, destination: 0, blocks: 4, sourceLba: 0, destinationLba: 100 }],
    );
    expectGood(await copy(unit, list));
    expect(readBack(backend, 100, 4)).toEqual(readBack(backend, 0, 4));
  });

  it('copies between two units registered in one CopyManager, in chunks larger than 1 MiB', async () => {
    const manager = new CopyManager();
    const a = copyUnit(8192);
    const b = copyUnit(8192);
    manager.register(a.unit);
    manager.register(b.unit);
    a.backend.write(
      10,
      filled(512 * 3000, (i) => i % 253),
      { fua: false },
    );
    const list = listFor(
      [a.unit, b.unit],
      [{ source: 0, destination: 1, blocks: 3000, sourceLba: 10, destinationLba: 5 }],
    );
    expectGood(await copy(b.unit, list));
    expect(sameBytes(readBack(b.backend, 5, 3000), readBack(a.backend, 10, 3000))).toBe(true);
  });

  it('copies between units of different block sizes; DC selects which block size counts', async () => {
    const manager = new CopyManager();
    const small = copyUnit(256, 512);
    const large = copyUnit(64, 4096);
    manager.register(small.unit);
    manager.register(large.unit);
    small.backend.write(
      0,
      filled(4096 * 2, (i) => i + 1),
      { fua: false },
    );
    const byDestination = listFor(
      [small.unit, large.unit],
      [{ source: 0, destination: 1, blocks: 2, sourceLba: 0, destinationLba: 3, destinationCount: true }],
    );
    expectGood(await copy(small.unit, byDestination));
    expect(readBack(large.backend, 3, 2)).toEqual(readBack(small.backend, 0, 16));
    const bySource = listFor(
      [small.unit, large.unit],
      [{ source: 0, destination: 1, blocks: 8, sourceLba: 0, destinationLba: 10 }],
    );
    expectGood(await copy(small.unit, bySource));
    expect(readBack(large.backend, 10, 1)).toEqual(readBack(small.backend, 0, 8));
    const ragged = listFor(
      [small.unit, large.unit],
      [{ source: 0, destination: 1, blocks: 3, sourceLba: 0, destinationLba: 0 }],
    );
    expectCheck(await copy(small.unit, ragged), 'COPY_SEGMENT_GRANULARITY_VIOLATION');
  });

  it('several segments run in order', async () => {
    const { unit, backend } = copyUnit();
    backend.write(0, filled(512, 1), { fua: false });
    const list = listFor(
      [unit],
      [
        { source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 },
        { source: 0, destination: 0, blocks: 2, sourceLba: 0, destinationLba: 2 },
      ],
    );
    expectGood(await copy(unit, list));
    expect(readBack(backend, 0, 4).every((b) => b === 1)).toBe(true);
  });

  it('an unknown designator is COPY ABORTED / COPY TARGET DEVICE NOT REACHABLE', async () => {
    const a = copyUnit();
    const stranger = copyUnit();
    const list = listFor(
      [a.unit, stranger.unit],
      [{ source: 0, destination: 1, blocks: 1, sourceLba: 0, destinationLba: 0 }],
    );
    expectCheck(await copy(a.unit, list), 'COPY_TARGET_DEVICE_NOT_REACHABLE');
  });

  it('a unit that does not offer EXTENDED COPY answers INVALID COMMAND OPERATION CODE', async () => {
    const { unit } = makeUnit();
    const list = listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    expectCheck(await copy(unit, list), 'INVALID_COMMAND_OPERATION_CODE');
    expectCheck(await run(unit, rcr(3, 0, 64), { dataInLength: 64 }), 'INVALID_COMMAND_OPERATION_CODE');
  });

  it('parameter list length 0 is not an error; shorter than the header is PARAMETER LIST LENGTH ERROR', async () => {
    const { unit } = copyUnit();
    expectGood(await run(unit, xcopyCdb(0)));
    expectCheck(await run(unit, xcopyCdb(8), { dataOut: new Uint8Array(8) }), 'PARAMETER_LIST_LENGTH_ERROR');
  });

  it('descriptor list lengths beyond the parameter list are PARAMETER LIST LENGTH ERROR', async () => {
    const { unit } = copyUnit();
    const list = listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    expectCheck(await copy(unit, list.subarray(0, list.length - 4)), 'PARAMETER_LIST_LENGTH_ERROR');
  });

  it('an unsupported target descriptor type is UNSUPPORTED TARGET DESCRIPTOR TYPE CODE', async () => {
    const { unit } = copyUnit();
    const list = listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    list[16] = 0xe0;
    expectCheck(await copy(unit, list), 'UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE', {
      inCdb: false,
      byte: 16,
    });
  });

  it('an unsupported segment descriptor type is UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE', async () => {
    const { unit } = copyUnit();
    const list = listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    list[48] = 0x0a;
    expectCheck(await copy(unit, list), 'UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE', {
      inCdb: false,
      byte: 48,
    });
  });

  it('too many target or segment descriptors are TOO MANY ... DESCRIPTORS', async () => {
    const { unit } = copyUnit();
    const nine = listFor(new Array(9).fill(unit), [
      { source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 },
    ]);
    expectCheck(await copy(unit, nine), 'TOO_MANY_TARGET_DESCRIPTORS');
    const segments = Array.from({ length: 33 }, () => ({
      source: 0,
      destination: 0,
      blocks: 1,
      sourceLba: 0,
      destinationLba: 1,
    }));
    expectCheck(await copy(unit, listFor([unit], segments)), 'TOO_MANY_SEGMENT_DESCRIPTORS');
  });

  it.each([
    ['a non-binary code set', 16 + 4, 0x02, 16 + 4, 3],
    ['a non-LU association', 16 + 5, 0x13, 16 + 5, 5],
    ['a non-NAA designator type', 16 + 5, 0x02, 16 + 5, 3],
    ['NUL set', 16 + 1, 0x20, 16 + 1, 5],
  ])('%s in the 0xE4 descriptor is INVALID FIELD IN PARAMETER LIST', async (_name, at, value, byte, bit) => {
    const { unit } = copyUnit();
    const list = listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    list[at] = value;
    expectCheck(await copy(unit, list), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte, bit });
  });

  it('a designator length other than 8 or 16 is INVALID FIELD IN PARAMETER LIST', async () => {
    const { unit } = copyUnit();
    const list = listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    list[16 + 7] = 12;
    expectCheck(await copy(unit, list), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 23 });
  });

  it('a non-block peripheral device type is COPY ABORTED / INCORRECT COPY TARGET DEVICE TYPE', async () => {
    const { unit } = copyUnit();
    const list = listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    list[17] = 0x01;
    expectCheck(await copy(unit, list), 'COPY_ABORTED_INCORRECT_COPY_TARGET_DEVICE_TYPE');
  });

  it('a DISK BLOCK LENGTH unlike the unit is INVALID FIELD IN PARAMETER LIST at that field', async () => {
    const { unit } = copyUnit();
    const list = encodeExtendedCopyParameters({
      targets: [{ designator: unit.config.naa, blockLength: 4096 }],
      segments: [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }],
    });
    expectCheck(await copy(unit, list), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 16 + 29 });
  });

  it('segment descriptor errors point at the offending field', async () => {
    const { unit } = copyUnit();
    const base = () =>
      listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    const badLength = base();
    badLength[48 + 3] = 0x10;
    expectCheck(await copy(unit, badLength), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 50 });
    const badSource = base();
    badSource[48 + 5] = 1;
    expectCheck(await copy(unit, badSource), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 52 });
    const badDestination = base();
    badDestination[48 + 7] = 4;
    expectCheck(await copy(unit, badDestination), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 54,
    });
    const reserved = base();
    reserved[48 + 1] = 0x80;
    expectCheck(await copy(unit, reserved), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 49,
      bit: 7,
    });
    const reserved89 = base();
    reserved89[48 + 9] = 1;
    expectCheck(await copy(unit, reserved89), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 56 });
    const cut = base();
    putBe32(cut, 8, 20);
    expectCheck(await copy(unit, cut), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 8 });
  });

  it('header errors: LIST ID USAGE 01b, a list id with usage 11b, reserved bytes, inline data, ragged target list', async () => {
    const { unit } = copyUnit();
    const base = () =>
      listFor([unit], [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }]);
    const usage = base();
    usage[1] = 0x08;
    expectCheck(await copy(unit, usage), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 1,
      bit: 4,
    });
    const noList = listFor(
      [unit],
      [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 }],
      {
        listIdUsage: 'none',
        listIdentifier: 3,
      },
    );
    expectCheck(await copy(unit, noList), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 0 });
    const reserved = base();
    reserved[5] = 1;
    expectCheck(await copy(unit, reserved), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 5,
      bit: 0,
    });
    const inline = new Uint8Array([...base(), 0, 0, 0, 0]);
    putBe32(inline, 12, 4);
    expectCheck(await copy(unit, inline), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 12 });
    const ragged = base();
    ragged[3] = 31;
    expectCheck(await copy(unit, ragged), 'INVALID_FIELD_IN_PARAMETER_LIST', { inCdb: false, byte: 2 });
  });

  it('a segment past the end of either unit is LBA OUT OF RANGE, before anything is copied', async () => {
    const { unit, backend } = copyUnit(256);
    backend.write(0, filled(512, 5), { fua: false });
    const list = listFor(
      [unit],
      [
        { source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 1 },
        { source: 0, destination: 0, blocks: 2, sourceLba: 0, destinationLba: 255 },
      ],
    );
    expectCheck(await copy(unit, list), 'LBA_OUT_OF_RANGE');
    expect(readBack(backend, 1, 1).every((b) => b === 0)).toBe(true);
  });

  it('a read-only destination is WRITE PROTECTED', async () => {
    const manager = new CopyManager();
    const source = copyUnit();
    const target = makeUnit({ readOnly: true, config: { extendedCopy: true } });
    manager.register(source.unit);
    manager.register(target.unit);
    const list = listFor(
      [source.unit, target.unit],
      [{ source: 0, destination: 1, blocks: 1, sourceLba: 0, destinationLba: 0 }],
    );
    expectCheck(await copy(source.unit, list), 'WRITE_PROTECTED');
  });

  it('a failing copy target ends the copy with COPY ABORTED / THIRD PARTY DEVICE FAILURE', async () => {
    const failing = new FaultInjectionBackend(new MemoryBackend({ blockSize: 512, blockCount: 64 }), {
      failReads: [3],
    });
    const { unit } = makeUnit({ backend: failing, config: { extendedCopy: true } });
    const list = listFor(
      [unit],
      [{ source: 0, destination: 0, blocks: 4, sourceLba: 0, destinationLba: 10 }],
      {
        listIdUsage: 'hold',
        listIdentifier: 9,
      },
    );
    expectCheck(await copy(unit, list, 'n1'), 'THIRD_PARTY_DEVICE_FAILURE');
    const status = await run(unit, rcr(0, 9, 12), { dataInLength: 12, nexus: 'n1' });
    expect(status.data[4]).toBe(0x02); // completed with errors
  });

  it('COPY STATUS reports a copy by list identifier per I_T nexus (LIST ID USAGE 00b and 10b, not 11b)', async () => {
    const { unit } = copyUnit();
    const list = listFor(
      [unit],
      [{ source: 0, destination: 0, blocks: 4, sourceLba: 0, destinationLba: 10 }],
      {
        listIdUsage: 'hold',
        listIdentifier: 7,
      },
    );
    expectGood(await copy(unit, list, 'n1'));
    const out = await run(unit, rcr(0, 7, 12), { dataInLength: 12, nexus: 'n1' });
    expectGood(out);
    expect(be32(out.data, 0)).toBe(8);
    expect(out.data[4]).toBe(0x01); // completed without errors
    expect(be16(out.data, 5)).toBe(1);
    expect(out.data[7]).toBe(0); // bytes
    expect(be32(out.data, 8)).toBe(2048);
    expectCheck(await run(unit, rcr(0, 7, 12), { dataInLength: 12, nexus: 'n2' }), 'INVALID_FIELD_IN_CDB', {
      byte: 2,
    });
    // LIST ID USAGE 10b (sg_xcopy's default when no data is held): the identifier is still valid.
    const noHold = listFor(
      [unit],
      [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 10 }],
      {
        listIdUsage: 'no-hold',
        listIdentifier: 8,
      },
    );
    expectGood(await copy(unit, noHold, 'n1'));
    const noHoldStatus = await run(unit, rcr(0, 8, 12), { dataInLength: 12, nexus: 'n1' });
    expectGood(noHoldStatus);
    expect(noHoldStatus.data[4]).toBe(0x01);
    expect(be32(noHoldStatus.data, 8)).toBe(512);
    // 11b: no identifier, nothing to report.
    const none = listFor(
      [unit],
      [{ source: 0, destination: 0, blocks: 1, sourceLba: 0, destinationLba: 10 }],
      { listIdUsage: 'none', listIdentifier: 0 },
    );
    expectGood(await copy(unit, none, 'n3'));
    expectCheck(await run(unit, rcr(0, 0, 12), { dataInLength: 12, nexus: 'n3' }), 'INVALID_FIELD_IN_CDB', {
      byte: 2,
    });
  });

  it('a list identifier still running on the same nexus is OPERATION IN PROGRESS', async () => {
    const slow = new FaultInjectionBackend(new MemoryBackend({ blockSize: 512, blockCount: 64 }), {
      latencyMs: 5,
    });
    const { unit } = makeUnit({ backend: slow, config: { extendedCopy: true } });
    const list = listFor(
      [unit],
      [{ source: 0, destination: 0, blocks: 4, sourceLba: 0, destinationLba: 10 }],
      {
        listIdUsage: 'hold',
        listIdentifier: 1,
      },
    );
    const first = copy(unit, list, 'n');
    await new Promise((r) => setTimeout(r, 1));
    const running = await run(unit, rcr(0, 1, 12), { dataInLength: 12, nexus: 'n' });
    expect(running.data[4]).toBe(0x00); // operation in progress
    expectCheck(await copy(unit, list, 'n'), 'OPERATION_IN_PROGRESS');
    expectGood(await copy(unit, list, 'other'));
    expectGood(await first);
  });

  it('OPERATING PARAMETERS lists the limits and the implemented descriptor types 02h and E4h', async () => {
    const { unit } = copyUnit(256, 4096);
    const out = await run(unit, rcr(3, 0, 64), { dataInLength: 64 });
    expectGood(out);
    const d = out.data;
    expect(d.length).toBe(46);
    expect(be32(d, 0)).toBe(42);
    expect(d[4]).toBe(0x01);
    expect(be16(d, 8)).toBe(8);
    expect(be16(d, 10)).toBe(32);
    expect(be32(d, 12)).toBe(8 * 32 + 32 * 28);
    expect(be32(d, 16)).toBe(0xffff * 4096);
    expect(d[37]).toBe(12);
    expect(d[43]).toBe(2);
    expect([d[44], d[45]]).toEqual([0x02, 0xe4]);
  });

  it('CDBs round-trip through decode/encode', () => {
    for (const [entry, bytes] of [
      [copyCommands[0]!, [...xcopyCdb(0x01020304)]],
      [copyCommands[1]!, [...rcr(0, 5, 0x0a0b0c0d)]],
      [copyCommands[2]!, [...rcr(3, 0, 64)]],
    ] as const) {
      expect([...entry.encode!(entry.decode(Uint8Array.from(bytes)))]).toEqual(bytes);
    }
  });
});

describe('CopyManager', () => {
  it('register returns unregister; a unit is then unreachable', async () => {
    const manager = new CopyManager();
    const a = copyUnit();
    const b = copyUnit();
    manager.register(a.unit);
    const unregister = manager.register(b.unit);
    expect(manager.units).toEqual([a.unit, b.unit]);
    expect(manager.resolve(b.unit.config.naa)).toBe(b.unit);
    unregister();
    expect(manager.resolve(b.unit.config.naa)).toBeUndefined();
    expect(CopyManager.of(b.unit)).toBeUndefined();
    const list = listFor(
      [a.unit, b.unit],
      [{ source: 0, destination: 1, blocks: 1, sourceLba: 0, destinationLba: 0 }],
    );
    expectCheck(await copy(a.unit, list), 'COPY_TARGET_DEVICE_NOT_REACHABLE');
  });

  it('refuses a second unit with the same designator, and a unit already in another manager', () => {
    const manager = new CopyManager();
    const a = copyUnit();
    const twin = makeUnit({ config: { naa: a.unit.config.naa } });
    manager.register(a.unit);
    manager.register(a.unit); // idempotent
    expect(() => manager.register(twin.unit)).toThrow(CopyManagerError);
    expect(() => new CopyManager().register(a.unit)).toThrow(CopyManagerError);
  });
});
