import { describe, expect, it, vi } from 'vitest';
import { FaultInjectionBackend } from '../backends/fault-injection.js';
import { MemoryBackend } from '../backends/memory.js';
import { decodeSense } from '../sense/sense.js';
import { expectCheck, expectGood, makeUnit, run } from '../testing/harness.js';
import { BackendIoError } from './backend.js';
import type { OpcodeEntry } from './command.js';
import { ScsiCheckCondition } from './errors.js';
import { ScsiStatus } from './status.js';
import { LogicalUnit } from './unit.js';
import { execute } from '../execute.js';

const TUR = [0, 0, 0, 0, 0, 0];
const INQUIRY = (alloc: number) => [0x12, 0, 0, alloc >> 8, alloc & 0xff, 0];

describe('opcode dispatch', () => {
  it('unknown opcodes (reserved group 3, vendor groups 6 and 7) get INVALID COMMAND OPERATION CODE', async () => {
    const { unit } = makeUnit();
    for (const opcode of [0x02, 0x60, 0x7e, 0xc0, 0xff, 0x3f]) {
      expectCheck(
        await run(unit, [opcode, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        'INVALID_COMMAND_OPERATION_CODE',
      );
    }
  });

  it('an unknown service action is INVALID FIELD IN CDB at byte 1 bit 4', async () => {
    const { unit } = makeUnit();
    const result = await run(unit, [0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
    expectCheck(result, 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 4 });
  });

  it('an unknown variable-length service action points at bytes 8-9', async () => {
    const { unit } = makeUnit();
    const cdb = new Uint8Array(32);
    cdb[0] = 0x7f;
    cdb[7] = 0x18;
    cdb[9] = 0x77;
    expectCheck(await run(unit, cdb), 'INVALID_FIELD_IN_CDB', { byte: 8, bit: 7 });
  });

  it('a variable-length CDB whose ADDITIONAL CDB LENGTH disagrees is INVALID FIELD IN CDB at byte 7', async () => {
    const { unit } = makeUnit();
    const cdb = new Uint8Array(32);
    cdb[0] = 0x7f;
    cdb[7] = 0x10;
    cdb[9] = 0x09; // READ(32)
    expectCheck(await run(unit, cdb), 'INVALID_FIELD_IN_CDB', { byte: 7 });
  });

  it('a CDB shorter than its command is INVALID FIELD IN COMMAND INFORMATION UNIT', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, [0x28, 0, 0, 0]), 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
    expectCheck(await run(unit, []), 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
    expectCheck(await run(unit, [0x9e]), 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
    expectCheck(await run(unit, [0x7f, 0, 0, 0, 0, 0, 0, 0x18]), 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
  });

  it('execute(unit, request) is unit.execute(request)', async () => {
    const { unit } = makeUnit();
    expect(await execute(unit, { cdb: new Uint8Array(6) })).toEqual({
      status: ScsiStatus.GOOD,
      residual: 0,
      direction: 'none',
    });
  });

  it('a CDB longer than its command is accepted (transports pad CDBs to 16 bytes)', async () => {
    const { unit } = makeUnit();
    expectGood(await run(unit, [...TUR, 0xaa, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0]));
  });
});

describe('CDB validation against the usage mask', () => {
  it('NACA=1 is INVALID FIELD IN CDB pointing at the control byte, bit 2', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, [0, 0, 0, 0, 0, 0x04]), 'INVALID_FIELD_IN_CDB', { byte: 5, bit: 2 });
    expectCheck(await run(unit, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04]), 'INVALID_FIELD_IN_CDB', {
      byte: 9,
      bit: 2,
    });
  });

  it('a reserved bit points at its byte and the most significant offending bit', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, [0, 0, 0x30, 0, 0, 0]), 'INVALID_FIELD_IN_CDB', { byte: 2, bit: 5 });
    // READ(10) byte 1 bit 2 (RARC) is not supported, byte 6 bits 7-6 are reserved.
    expectCheck(await run(unit, [0x28, 0x04, 0, 0, 0, 0, 0, 0, 1, 0]), 'INVALID_FIELD_IN_CDB', {
      byte: 1,
      bit: 2,
    });
    expectCheck(await run(unit, [0x28, 0, 0, 0, 0, 0, 0x80, 0, 1, 0]), 'INVALID_FIELD_IN_CDB', {
      byte: 6,
      bit: 7,
    });
  });

  it('vendor-specific control bits are rejected (none are defined)', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, [0, 0, 0, 0, 0, 0x80]), 'INVALID_FIELD_IN_CDB', { byte: 5, bit: 7 });
  });
});

describe('unit attentions (SAM-5 5.14)', () => {
  it('POWER ON, RESET is reported once per I_T nexus, then commands run', async () => {
    const unit = new LogicalUnit({ backend: new MemoryBackend({ blockSize: 512, blockCount: 64 }) });
    expectCheck(await run(unit, TUR, { nexus: 'a' }), 'POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED');
    expectGood(await run(unit, TUR, { nexus: 'a' }));
    expectCheck(await run(unit, TUR, { nexus: 'b' }), 'POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED');
    expectGood(await run(unit, TUR, { nexus: 'b' }));
    // No nexus id is its own (anonymous) nexus.
    expectCheck(await run(unit, TUR), 'POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED');
    expectGood(await run(unit, TUR));
  });

  it('INQUIRY and REPORT LUNS run with a UA pending and do not clear it', async () => {
    const unit = new LogicalUnit({ backend: new MemoryBackend({ blockSize: 512, blockCount: 64 }) });
    expectGood(await run(unit, INQUIRY(96)));
    expectGood(await run(unit, [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0]));
    expectCheck(await run(unit, TUR), 'POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED');
  });

  it('REQUEST SENSE returns the UA as its data, GOOD, and clears it', async () => {
    const unit = new LogicalUnit({ backend: new MemoryBackend({ blockSize: 512, blockCount: 64 }) });
    const data = expectGood(await run(unit, [0x03, 0, 0, 0, 18, 0]));
    expect(decodeSense(data)).toMatchObject({ key: 6, asc: 0x29, ascq: 0 });
    expectGood(await run(unit, TUR));
  });

  it('a UA is reported before an invalid opcode (it is consumed by that command)', async () => {
    const unit = new LogicalUnit({ backend: new MemoryBackend({ blockSize: 512, blockCount: 64 }) });
    expectCheck(await run(unit, [0xc0, 0, 0, 0, 0, 0]), 'POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED');
    expectCheck(await run(unit, [0xc0, 0, 0, 0, 0, 0]), 'INVALID_COMMAND_OPERATION_CODE');
  });

  it('capacity changed goes to every nexus seen; mode parameters changed skips the one that changed them', async () => {
    const { unit } = makeUnit();
    for (const nexus of ['a', 'b']) expectGood(await run(unit, TUR, { nexus }));
    unit.capacityChanged();
    unit.capacityChanged(); // not queued twice
    unit.raiseUnitAttention('MODE_PARAMETERS_CHANGED', 'a');
    expectCheck(await run(unit, TUR, { nexus: 'a' }), 'CAPACITY_DATA_HAS_CHANGED');
    expectGood(await run(unit, TUR, { nexus: 'a' }));
    expectCheck(await run(unit, TUR, { nexus: 'b' }), 'CAPACITY_DATA_HAS_CHANGED');
    expectCheck(await run(unit, TUR, { nexus: 'b' }), 'MODE_PARAMETERS_CHANGED');
    expectGood(await run(unit, TUR, { nexus: 'b' }));
  });

  it('UAs use descriptor format when D_SENSE is set', async () => {
    const unit = new LogicalUnit({
      backend: new MemoryBackend({ blockSize: 512, blockCount: 64 }),
      descriptorSense: true,
    });
    const result = await run(unit, TUR);
    expect(result.sense?.[0]).toBe(0x72);
  });
});

describe('NOT READY and WRITE PROTECTED rules from the entry flags', () => {
  it('FORMAT IN PROGRESS with progress for commands not allowed during format', async () => {
    const { unit } = makeUnit();
    const format = unit.format as unknown as { active: boolean; progress: number };
    Object.defineProperty(unit, 'format', { value: { active: true, progress: 0x4000 } });
    const sense = expectCheck(await run(unit, TUR), 'NOT_READY_FORMAT_IN_PROGRESS');
    expect(sense.progress).toBe(0x4000);
    expectGood(await run(unit, INQUIRY(36)));
    const rs = expectGood(await run(unit, [0x03, 0, 0, 0, 252, 0]));
    expect(decodeSense(rs)).toMatchObject({ key: 2, asc: 4, ascq: 4, progress: 0x4000 });
    expect(format.active).toBe(false);
  });

  it('a read-only unit refuses writes with DATA PROTECT / WRITE PROTECTED', async () => {
    const { unit } = makeUnit({ readOnly: true });
    expectCheck(
      await run(unit, [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: new Uint8Array(512) }),
      'WRITE_PROTECTED',
    );
    expectCheck(await run(unit, [0x0a, 0, 0, 0, 1, 0], { dataOut: new Uint8Array(512) }), 'WRITE_PROTECTED');
    expectGood(await run(unit, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]));
  });

  it('a read-only backend makes the unit read-only', async () => {
    const { unit } = makeUnit({
      backend: new MemoryBackend({ blockSize: 512, blockCount: 8, readOnly: true }),
    });
    expect(unit.readOnly).toBe(true);
    expectCheck(await run(unit, [0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 'WRITE_PROTECTED');
  });
});

describe('Data-Out length', () => {
  it('a Data-Out buffer shorter than the transfer is INVALID FIELD IN COMMAND INFORMATION UNIT', async () => {
    const { unit } = makeUnit();
    const result = await run(unit, [0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0], { dataOut: new Uint8Array(1000) });
    expectCheck(result, 'INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
  });

  it('extra Data-Out bytes are ignored', async () => {
    const { unit, backend } = makeUnit();
    const data = new Uint8Array(600).fill(9);
    expectGood(await run(unit, [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: data }));
    const back = new Uint8Array(1024);
    await backend.read(0, back);
    expect(back.subarray(0, 512).every((b) => b === 9)).toBe(true);
    expect(back.subarray(512).every((b) => b === 0)).toBe(true);
  });
});

describe('allocation length and residuals (SPC-5 4.2.5.6)', () => {
  it('returns min(allocation length, response) and never changes length fields', async () => {
    const { unit } = makeUnit();
    const data = expectGood(await run(unit, INQUIRY(5)));
    expect(data.length).toBe(5);
    expect(data[4]).toBe(91); // ADDITIONAL LENGTH still describes 96 bytes
  });

  it('allocation length 0 returns no data and is not an error', async () => {
    const { unit } = makeUnit();
    const result = await run(unit, INQUIRY(0), { dataInLength: 36 });
    expect(result).toEqual({ status: ScsiStatus.GOOD, residual: 36, direction: 'in' });
  });

  it('the initiator buffer caps the data; the residual is what it did not get', async () => {
    const { unit } = makeUnit();
    const small = await run(unit, INQUIRY(96), { dataInLength: 20 });
    expect(small.dataIn?.length).toBe(20);
    expect(small.residual).toBe(0);
    const large = await run(unit, INQUIRY(96), { dataInLength: 255 });
    expect(large.dataIn?.length).toBe(96);
    expect(large.residual).toBe(255 - 96);
  });

  it('CHECK CONDITION transfers nothing: residual = dataInLength', async () => {
    const { unit } = makeUnit();
    const result = await run(unit, [0xc0, 0, 0, 0, 0, 0], { dataInLength: 512 });
    expect(result.residual).toBe(512);
    expect(result.dataIn).toBeUndefined();
  });

  it('a command without data completes with the full residual', async () => {
    const { unit } = makeUnit();
    expect(await run(unit, TUR, { dataInLength: 8 })).toEqual({ status: 0, residual: 8, direction: 'none' });
  });
});

describe('failures become SCSI status, never exceptions', () => {
  const failing = (error: unknown) => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    backend.read = () => {
      throw error;
    };
    backend.write = () => Promise.reject(error);
    return backend;
  };

  it('backend read failure: MEDIUM ERROR / UNRECOVERED READ ERROR with INFORMATION = LBA', async () => {
    const { unit } = makeUnit({ backend: failing(new BackendIoError('EIO', 7)) });
    const result = await run(unit, [0x28, 0, 0, 0, 0, 5, 0, 0, 4, 0]);
    expectCheck(result, 'UNRECOVERED_READ_ERROR', { information: 7 });
  });

  it('go-tcmu regression: a WRITE failure is WRITE ERROR (0C 00), not a read error', async () => {
    const { unit } = makeUnit({ backend: failing(new BackendIoError('EIO', 9)) });
    const result = await run(unit, [0x2a, 0, 0, 0, 0, 9, 0, 0, 1, 0], { dataOut: new Uint8Array(512) });
    const sense = expectCheck(result, 'WRITE_ERROR', { information: 9 });
    expect([sense.asc, sense.ascq]).toEqual([0x0c, 0x00]);
  });

  it('a plain Error from the backend is still a MEDIUM ERROR, without INFORMATION', async () => {
    const { unit } = makeUnit({ backend: failing(new Error('disk gone')) });
    const sense = expectCheck(await run(unit, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 'UNRECOVERED_READ_ERROR');
    expect(sense.information).toBeUndefined();
  });

  it('a BackendIoError thrown straight from a handler maps by direction', async () => {
    const { unit } = makeUnit();
    const base = { name: 'X', cdbLength: 6, usage: [0xc1, 0, 0, 0, 0, 0], decode: () => ({}) } as const;
    unit.override({
      ...base,
      opcode: 0xc1,
      direction: 'in',
      handler: () => {
        throw new BackendIoError('x', 3);
      },
    });
    unit.override({
      ...base,
      opcode: 0xc2,
      usage: [0xc2, 0, 0, 0, 0, 0],
      direction: 'out',
      writes: true,
      handler: () => Promise.reject(new BackendIoError('x')),
    });
    expectCheck(await run(unit, [0xc1, 0, 0, 0, 0, 0]), 'UNRECOVERED_READ_ERROR', { information: 3 });
    const sense = expectCheck(await run(unit, [0xc2, 0, 0, 0, 0, 0]), 'WRITE_ERROR');
    expect(sense.information).toBeUndefined();
  });

  it('an unexpected throw is HARDWARE ERROR / INTERNAL TARGET FAILURE and is logged', async () => {
    const logger = { debug: vi.fn(), warn: vi.fn(), error: vi.fn() };
    const { unit } = makeUnit({ logger });
    unit.override({
      opcode: 0xc3,
      name: 'BROKEN',
      cdbLength: 6,
      direction: 'none',
      usage: [0xc3, 0, 0, 0, 0, 0],
      decode: () => {
        throw new TypeError('bug');
      },
      handler: () => undefined,
    });
    expectCheck(await run(unit, [0xc3, 0, 0, 0, 0, 0]), 'INTERNAL_TARGET_FAILURE');
    expect(logger.error).toHaveBeenCalledOnce();
    expect(logger.error.mock.calls[0]![0]).toMatchObject({ cdb: 'c3 00 00 00 00 00' });
  });

  it('a ScsiCheckCondition naming an unknown reason is an internal failure', async () => {
    const { unit } = makeUnit();
    unit.override({
      opcode: 0xc4,
      name: 'BAD REASON',
      cdbLength: 6,
      direction: 'none',
      usage: [0xc4, 0, 0, 0, 0, 0],
      decode: () => ({}),
      handler: () => {
        throw new ScsiCheckCondition('NOT_A_REASON' as 'WRITE_ERROR');
      },
    });
    expectCheck(await run(unit, [0xc4, 0, 0, 0, 0, 0]), 'INTERNAL_TARGET_FAILURE');
  });
});

describe('abort (AbortSignal)', () => {
  it('an already aborted command is TASK ABORTED without sense', async () => {
    const { unit } = makeUnit();
    const controller = new AbortController();
    controller.abort();
    expect(await run(unit, TUR, { signal: controller.signal, dataInLength: 4 })).toEqual({
      status: ScsiStatus.TASK_ABORTED,
      residual: 4,
      direction: 'none',
    });
  });

  it('a command aborted while its backend works is TASK ABORTED, whether it fails or completes', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    let finish: (() => void) | undefined;
    // This read waits on its signal: the unit must hand it one.
    Object.defineProperty(backend, 'ignoresSignal', { value: false });
    backend.read = (_lba: number, _into: Uint8Array, signal?: AbortSignal): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        finish = resolve;
        signal?.addEventListener('abort', () => reject(new Error('aborted')));
      });
    const { unit } = makeUnit({ backend });
    const failing = new AbortController();
    const pending = run(unit, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { signal: failing.signal });
    failing.abort();
    expect((await pending).status).toBe(ScsiStatus.TASK_ABORTED);

    const completing = new AbortController();
    const second = run(unit, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { signal: completing.signal });
    await Promise.resolve();
    const done = finish!;
    completing.abort();
    done();
    expect((await second).status).toBe(ScsiStatus.TASK_ABORTED);
  });
});

describe('lazy abort state (CommandRequest.aborted, signal getter)', () => {
  const read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
  const write10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];

  /** A request whose signal getter counts how often it is read. */
  const lazyRequest = (cdb: number[], extra: { dataOut?: Uint8Array; aborted?: () => boolean } = {}) => {
    const reads = { signal: 0 };
    const controller = new AbortController();
    const request = {
      cdb: new Uint8Array(cdb),
      dataInLength: 512,
      ...(extra.dataOut ? { dataOut: extra.dataOut } : {}),
      get signal() {
        reads.signal++;
        return controller.signal;
      },
      get aborted() {
        return extra.aborted?.() ?? false;
      },
    };
    return { request, reads, controller };
  };

  it('READ and WRITE on a backend that ignores signals never read the signal', async () => {
    const { unit } = makeUnit();
    const write = lazyRequest(write10, { dataOut: new Uint8Array(512).fill(7) });
    expect((await unit.execute(write.request)).status).toBe(ScsiStatus.GOOD);
    const read = lazyRequest(read10);
    const result = await unit.execute(read.request);
    expect(result.status).toBe(ScsiStatus.GOOD);
    expect(result.dataIn?.[0]).toBe(7);
    expect(write.reads.signal + read.reads.signal).toBe(0);
  });

  it('the aborted poll answers TASK ABORTED before the command runs', async () => {
    const { unit, backend } = makeUnit();
    const write = lazyRequest(write10, { dataOut: new Uint8Array(512).fill(9), aborted: () => true });
    expect((await unit.execute(write.request)).status).toBe(ScsiStatus.TASK_ABORTED);
    const into = new Uint8Array(512);
    backend.read(0, into);
    expect(into[0]).toBe(0);
  });

  it('an asynchronous backend that ignores signals gets none, and an abort meanwhile is still TASK ABORTED', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    let finish: (() => void) | undefined;
    let seen: AbortSignal | undefined | 'not called' = 'not called';
    backend.read = (_lba: number, _into: Uint8Array, signal?: AbortSignal): Promise<void> => {
      seen = signal;
      return new Promise<void>((resolve) => {
        finish = resolve;
      });
    };
    const { unit } = makeUnit({ backend });
    let abortedFlag = false;
    const read = lazyRequest(read10, { aborted: () => abortedFlag });
    const pending = unit.execute(read.request);
    await Promise.resolve();
    expect(seen).toBeUndefined();
    abortedFlag = true;
    finish!();
    expect((await pending).status).toBe(ScsiStatus.TASK_ABORTED);
    expect(read.reads.signal).toBe(0);
  });

  it('a backend that takes signals gets it, and an abort while it works is TASK ABORTED', async () => {
    const backend = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    Object.defineProperty(backend, 'ignoresSignal', { value: false });
    let seen: AbortSignal | undefined;
    backend.read = (_lba: number, _into: Uint8Array, signal?: AbortSignal): Promise<void> => {
      seen = signal;
      return new Promise<void>((_resolve, reject) => {
        signal?.addEventListener('abort', () => reject(new Error('aborted')));
      });
    };
    const { unit } = makeUnit({ backend });
    let abortedFlag = false;
    const read = lazyRequest(read10, { aborted: () => abortedFlag });
    const pending = unit.execute(read.request);
    await Promise.resolve();
    expect(seen).toBe(read.controller.signal);
    abortedFlag = true;
    read.controller.abort();
    expect((await pending).status).toBe(ScsiStatus.TASK_ABORTED);
  });
});

describe('caller-provided Data-In buffer (CommandRequest.dataInBuffer)', () => {
  const read10 = (blocks: number) => new Uint8Array([0x28, 0, 0, 0, 0, 2, 0, 0, blocks, 0]);

  it('READ fills the caller buffer in place: no dataIn in the answer, the residual says what was produced', async () => {
    const { unit, backend } = makeUnit();
    const data = Uint8Array.from({ length: 1024 }, (_, i) => (i * 7 + 1) & 0xff);
    backend.write(2, data, { fua: false });
    const memory = new Uint8Array(4096).fill(0xee);
    const whole = memory.subarray(0, 1024);
    const exact = await unit.execute({ cdb: read10(2), dataInLength: 1024, dataInBuffer: whole });
    expect(exact).toEqual({ status: ScsiStatus.GOOD, residual: 0, direction: 'in' });
    expect(whole).toEqual(data);

    const larger = memory.subarray(1024);
    const first = await unit.execute({ cdb: read10(1), dataInLength: 3072, dataInBuffer: larger });
    expect(first).toEqual({ status: ScsiStatus.GOOD, residual: 2560, direction: 'in' });
    expect(memory.subarray(1024, 1024 + 512)).toEqual(data.subarray(0, 512));
    expect(memory[1024 + 512]).toBe(0xee);
  });

  it('READ fills a scatter list in place, across segments of any length, with or without readv', async () => {
    for (const vectored of [true, false]) {
      const { unit, backend } = makeUnit();
      const data = Uint8Array.from({ length: 2048 }, (_, i) => (i * 5 + 3) & 0xff);
      backend.write(2, data, { fua: false });
      if (!vectored) (backend as { readv?: unknown }).readv = undefined;
      const segments = [new Uint8Array(700), new Uint8Array(300), new Uint8Array(1048)];
      const result = await unit.execute({ cdb: read10(4), dataInLength: 2048, dataInBuffer: segments });
      expect(result).toEqual({ status: ScsiStatus.GOOD, residual: 0, direction: 'in' });
      expect(new Uint8Array([...segments[0]!, ...segments[1]!, ...segments[2]!])).toEqual(data);
    }
  });

  it('WRITE takes a scatter list of Data-Out (writev, or gathered without it)', async () => {
    for (const vectored of [true, false]) {
      const { unit, backend } = makeUnit();
      if (!vectored) (backend as { writev?: unknown }).writev = undefined;
      const segments = [new Uint8Array(100).fill(1), new Uint8Array(924).fill(2)];
      const write = Uint8Array.of(0x2a, 0, 0, 0, 0, 8, 0, 0, 2, 0);
      const result = await unit.execute({ cdb: write, dataOutSegments: segments });
      expect(result).toEqual({ status: ScsiStatus.GOOD, residual: 0, direction: 'out' });
      const back = new Uint8Array(1024);
      backend.read(8, back);
      expect(back).toEqual(new Uint8Array([...segments[0]!, ...segments[1]!]));
    }
  });

  it('answers synchronously when the backend does: no promise for READ, WRITE, INQUIRY or TUR', () => {
    const { unit } = makeUnit();
    const requests = [
      { cdb: read10(1), dataInLength: 512 },
      { cdb: Uint8Array.of(0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0), dataOut: new Uint8Array(512) },
      { cdb: Uint8Array.of(0x12, 0, 0, 0, 36, 0), dataInLength: 36 },
      { cdb: new Uint8Array(6) },
    ];
    for (const request of requests) {
      const result = unit.execute(request);
      expect(result).not.toBeInstanceOf(Promise);
      expect((result as { status: number }).status).toBe(ScsiStatus.GOOD);
    }
  });

  it('a buffer too small for the transfer is left untouched and a fresh one is answered', async () => {
    const { unit, backend } = makeUnit();
    backend.write(2, new Uint8Array(1024).fill(5), { fua: false });
    const small = new Uint8Array(512).fill(0xee);
    const result = await unit.execute({ cdb: read10(2), dataInLength: 1024, dataInBuffer: small });
    expect(result.status).toBe(ScsiStatus.GOOD);
    expect(result.dataIn?.buffer).not.toBe(small.buffer);
    expect(result.dataIn).toEqual(new Uint8Array(1024).fill(5));
    expect(small.every((b) => b === 0xee)).toBe(true);
  });
});

describe('abort while waiting for a range lock', () => {
  const write10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
  const caw = [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];

  it('a WRITE aborted behind an exclusive holder is TASK ABORTED and never reaches the medium', async () => {
    const { unit, backend } = makeUnit();
    const release = unit.locks.lock(0, 1, 'exclusive') as () => void;
    const controller = new AbortController();
    const pending = run(unit, write10, {
      dataOut: new Uint8Array(512).fill(0xaa),
      signal: controller.signal,
    });
    controller.abort();
    release();
    expect((await pending).status).toBe(ScsiStatus.TASK_ABORTED);
    const block = new Uint8Array(512);
    await backend.read(0, block);
    expect(block.every((b) => b === 0)).toBe(true);
    expect((unit.locks as { held: number }).held).toBe(0);
  });

  it('a COMPARE AND WRITE aborted while it waits is TASK ABORTED and writes nothing', async () => {
    const { unit, backend } = makeUnit();
    const release = unit.locks.lock(0, 1, 'shared') as () => void;
    const controller = new AbortController();
    const data = new Uint8Array(1024);
    data.fill(0xbb, 512);
    const pending = run(unit, caw, { dataOut: data, signal: controller.signal });
    await Promise.resolve();
    controller.abort();
    release();
    expect((await pending).status).toBe(ScsiStatus.TASK_ABORTED);
    const block = new Uint8Array(512);
    await backend.read(0, block);
    expect(block.every((b) => b === 0)).toBe(true);
  });
});

describe('sense format for LBAs beyond 32 bits', () => {
  it('a read failing at LBA 2^32 + 5 is MEDIUM ERROR in descriptor format with the 64-bit INFORMATION', async () => {
    const lba = 2 ** 32 + 5;
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 2 ** 33 });
    const backend = new FaultInjectionBackend(inner, { failReads: (at) => at === lba });
    const { unit } = makeUnit({ backend });
    const cdb = [0x88, 0, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0];
    const result = await run(unit, cdb);
    const sense = expectCheck(result, 'UNRECOVERED_READ_ERROR', { information: lba });
    expect(sense.format).toBe('descriptor');
    expect(result.sense![0]).toBe(0x72);
  });

  it('a read failing below 2^32 keeps fixed format (D_SENSE=0)', async () => {
    const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
    const backend = new FaultInjectionBackend(inner, { failReads: (at) => at === 7 });
    const { unit } = makeUnit({ backend });
    const sense = expectCheck(await run(unit, [0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0]), 'UNRECOVERED_READ_ERROR', {
      information: 7,
    });
    expect(sense.format).toBe('fixed');
  });

  describe('a backend whose storage is out of reach for now (BackendIoError.transient)', () => {
    const unitOver = (options: ConstructorParameters<typeof FaultInjectionBackend>[1]) => {
      const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
      return makeUnit({ backend: new FaultInjectionBackend(inner, { ...options, transient: true }) }).unit;
    };
    const expectBusy = (result: Awaited<ReturnType<typeof run>>, residual: number) => {
      expect(result.status).toBe(ScsiStatus.BUSY);
      expect(result.sense).toBeUndefined();
      expect(result.dataIn).toBeUndefined();
      expect(result.residual).toBe(residual);
    };

    it('READ, WRITE, WRITE SAME, VERIFY and SYNCHRONIZE CACHE answer BUSY, no sense, no data', async () => {
      const unit = unitOver({ failReads: [7], failWrites: [9], failFlush: true });
      expectBusy(await run(unit, [0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0], { dataInLength: 512 }), 512); // READ(10)
      expectBusy(await run(unit, [0x2a, 0, 0, 0, 0, 9, 0, 0, 1, 0], { dataOut: new Uint8Array(512) }), 0); // WRITE(10)
      expectBusy(await run(unit, [0x41, 0, 0, 0, 0, 8, 0, 0, 2, 0], { dataOut: new Uint8Array(512) }), 0); // WRITE SAME(10)
      expectBusy(await run(unit, [0x2f, 0, 0, 0, 0, 7, 0, 0, 1, 0]), 0); // VERIFY(10), BYTCHK 0
      expectBusy(await run(unit, [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 0); // SYNCHRONIZE CACHE(10)
      // Everything else on the unit still works.
      expectGood(await run(unit, [0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0]));
    });

    it('the same failures without `transient` stay medium errors at their LBA', async () => {
      const inner = new MemoryBackend({ blockSize: 512, blockCount: 64 });
      const backend = new FaultInjectionBackend(inner, { failReads: [7], failWrites: [9] });
      const { unit } = makeUnit({ backend });
      expectCheck(await run(unit, [0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0]), 'UNRECOVERED_READ_ERROR', {
        information: 7,
      });
      expectCheck(
        await run(unit, [0x2a, 0, 0, 0, 0, 9, 0, 0, 1, 0], { dataOut: new Uint8Array(512) }),
        'WRITE_ERROR',
        {
          information: 9,
        },
      );
    });

    it('a handler that wraps the failure in a CHECK CONDITION still answers BUSY; an abort wins', async () => {
      const { unit } = makeUnit();
      const transient = new BackendIoError('timed out', 3, { transient: true });
      unit.override({
        ...vendorLike,
        handler: () => {
          throw new ScsiCheckCondition('WRITE_ERROR', { information: 3, cause: transient });
        },
      });
      expectBusy(await run(unit, [0xc6, 0, 0, 0, 0, 0]), 0);
      const controller = new AbortController();
      unit.override({
        ...vendorLike,
        handler: () => {
          controller.abort();
          throw transient;
        },
      });
      const result = await run(unit, [0xc6, 0, 0, 0, 0, 0], { signal: controller.signal });
      expect(result.status).toBe(ScsiStatus.TASK_ABORTED);
    });
  });
});

const vendorLike: OpcodeEntry<undefined> = {
  opcode: 0xc6,
  name: 'VENDOR FAIL',
  cdbLength: 6,
  direction: 'none',
  usage: [0xc6, 0, 0, 0, 0, 0],
  decode: () => undefined,
  handler: () => undefined,
};

describe('extending the command set', () => {
  const vendorEcho: OpcodeEntry<{ length: number }> = {
    opcode: 0xc5,
    name: 'VENDOR ECHO',
    cdbLength: 6,
    direction: 'in',
    usage: [0xc5, 0, 0, 0, 0xff, 0],
    decode: (cdb) => ({ length: cdb[4]! }),
    allocationLength: (f) => f.length,
    handler: () => Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
  };

  it('override adds a command that is dispatched, validated and truncated like built-ins', async () => {
    const { unit } = makeUnit();
    unit.override(vendorEcho);
    expect([...expectGood(await run(unit, [0xc5, 0, 0, 0, 3, 0]))]).toEqual([1, 2, 3]);
    expectCheck(await run(unit, [0xc5, 1, 0, 0, 3, 0]), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 0 });
  });

  it('override replaces a built-in command for this unit only', async () => {
    const { unit } = makeUnit();
    const { unit: other } = makeUnit();
    unit.override({ ...vendorEcho, opcode: 0x00, usage: [0, 0, 0, 0, 0xff, 0], name: 'CUSTOM TUR' });
    expect(expectGood(await run(unit, [0, 0, 0, 0, 8, 0])).length).toBe(8);
    expectCheck(await run(other, [0, 0, 0, 0, 8, 0]), 'INVALID_FIELD_IN_CDB', { byte: 4, bit: 3 });
  });

  it('middleware runs in order and can answer or pass on', async () => {
    const { unit } = makeUnit();
    const seen: string[] = [];
    unit.use(async (request, next) => {
      seen.push('outer');
      const result = await next(request);
      seen.push(`outer saw ${result.status}`);
      return result;
    });
    unit.use((request, next) => {
      seen.push('inner');
      if (request.cdb[0] === 0xc6)
        return { status: ScsiStatus.GOOD, residual: 0, dataIn: Uint8Array.of(42), direction: 'in' as const };
      return next(request);
    });
    expect([...expectGood(await run(unit, [0xc6, 0, 0, 0, 0, 0]))]).toEqual([42]);
    expectGood(await run(unit, TUR));
    expect(seen).toEqual(['outer', 'inner', 'outer saw 0', 'outer', 'inner', 'outer saw 0']);
  });

  it('a middleware that throws or rejects yields HARDWARE ERROR, not a rejection', async () => {
    const { unit } = makeUnit();
    unit.use((request, next) => {
      if (request.cdb[0] === 0xc7) throw new Error('sync bug');
      if (request.cdb[0] === 0xc8) return Promise.reject(new Error('async bug'));
      return next(request);
    });
    expectCheck(await run(unit, [0xc7, 0, 0, 0, 0, 0]), 'INTERNAL_TARGET_FAILURE');
    expectCheck(await run(unit, [0xc8, 0, 0, 0, 0, 0]), 'INTERNAL_TARGET_FAILURE');
  });
});

describe('concurrency', () => {
  it('commands run concurrently and each gets its own answer', async () => {
    const { unit } = makeUnit();
    const writes = Array.from({ length: 16 }, (_, i) =>
      run(unit, [0x2a, 0, 0, 0, 0, i, 0, 0, 1, 0], { dataOut: new Uint8Array(512).fill(i + 1) }),
    );
    for (const result of await Promise.all(writes)) expectGood(result);
    const reads = await Promise.all(
      Array.from({ length: 16 }, (_, i) => run(unit, [0x28, 0, 0, 0, 0, i, 0, 0, 1, 0])),
    );
    for (const [i, result] of reads.entries())
      expect(expectGood(result).every((b) => b === i + 1)).toBe(true);
  });
});
