/**
 * RbdBackend on a real one-node Ceph cluster (tools/ceph/one-node.sh, started here and wiped
 * after): the backend's calls, then SCSI commands through a LogicalUnit over it, then the
 * cluster going away and coming back. Needs root and the Ceph packages (tools/bootstrap.sh);
 * without them beforeAll fails with the line that names the fix.
 */
import {
  BackendIoError,
  type CommandResult,
  decodeSense,
  defaultOpcodeTable,
  encodeUnmapParameterList,
  LogicalUnit,
  type SenseReasonName,
  SenseReasons,
  ScsiStatus,
} from '@tcmu/scsi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../../../tools/ceph/cluster.js';
import { installRbdCommands, RbdBackend, RbdClosedError, RbdNativeError, RbdOptionError } from './index.js';

const BLOCK = 512;
let cluster: TestCluster;
let backend: RbdBackend;

const pattern = (length: number, seed: number) =>
  Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
const open = (options: { image?: string; [key: string]: unknown } = {}) =>
  RbdBackend.open({ ...cluster.openOptions, ...options });
const readBack = async (b: RbdBackend, lba: number, blocks: number) => {
  const into = new Uint8Array(blocks * b.blockSize);
  await b.read(lba, into);
  return into;
};

beforeAll(async () => {
  cluster = await startCluster('rbd-backend');
  console.log(`one-node Ceph cluster up in ${(cluster.startMs / 1000).toFixed(1)} s`);
  backend = await open();
}, 180_000);

afterAll(async () => {
  await backend?.close();
  await cluster?.wipe();
}, 60_000);

describe('RbdBackend', () => {
  it('opens the image: size, object size, block count, capabilities', () => {
    expect(backend.name).toBe(`${cluster.pool}/${cluster.image}`);
    expect(backend.size).toBe(64 << 20);
    expect(backend.blockSize).toBe(BLOCK);
    expect(backend.blockCount).toBe((64 << 20) / BLOCK);
    expect(backend.objectSize).toBe(4 << 20);
    expect(backend.readOnly).toBe(false);
    expect(backend.unmappedReadsZero).toBe(true);
    expect(backend.ignoresSignal).toBe(true);
    for (const method of ['readv', 'writev', 'discard', 'writeZeroes'] as const)
      expect(backend[method]).toBeTypeOf('function');
  });

  it('writes and reads back, whole buffers and scatter/gather lists, across an object boundary', async () => {
    const lba = (4 << 20) / BLOCK - 5; // 5 blocks in object 0, 11 in object 1
    const data = pattern(16 * BLOCK, 1);
    await backend.write(lba, data, { fua: false });
    expect(await readBack(backend, lba, 16)).toEqual(data);
    // Segments need not be block multiples.
    const segments = [new Uint8Array(100), new Uint8Array(3000), new Uint8Array(16 * BLOCK - 3100)];
    await backend.readv(lba, segments);
    expect(Buffer.concat(segments)).toEqual(Buffer.from(data));
    const other = pattern(16 * BLOCK, 7);
    await backend.writev(lba, [other.subarray(0, 700), other.subarray(700)], { fua: false });
    expect(await readBack(backend, lba, 16)).toEqual(other);
  });

  it('FUA writes and flush complete (write2 with FADVISE_FUA; writev then flush)', async () => {
    const data = pattern(8 * BLOCK, 3);
    await backend.write(64, data, { fua: true });
    await backend.writev(72, [data.subarray(0, BLOCK), data.subarray(BLOCK)], { fua: true });
    await backend.flush();
    expect(await readBack(backend, 64, 8)).toEqual(data);
    expect(await readBack(backend, 72, 8)).toEqual(data);
  });

  it('discard and writeZeroes read back as zeros, also for ranges that are not whole objects', async () => {
    await backend.write(1000, pattern(64 * BLOCK, 5), { fua: false });
    await backend.discard(1001, 3);
    await backend.writeZeroes(1010, 2);
    const back = await readBack(backend, 1000, 64);
    const zero = (from: number, to: number) => back.subarray(from * BLOCK, to * BLOCK).every((b) => b === 0);
    expect(zero(1, 4)).toBe(true);
    expect(zero(10, 12)).toBe(true);
    expect(back.subarray(0, BLOCK)).toEqual(pattern(64 * BLOCK, 5).subarray(0, BLOCK));
    expect(zero(4, 5)).toBe(false);
  });

  it('writeSame repeats one block (rbd_aio_writesame)', async () => {
    const block = pattern(BLOCK, 9);
    await backend.writeSame(2000, 20, block);
    const back = await readBack(backend, 2000, 20);
    for (let i = 0; i < 20; i++) expect(back.subarray(i * BLOCK, (i + 1) * BLOCK)).toEqual(block);
    await expect(backend.writeSame(2000, 2, new Uint8Array(7))).rejects.toBeInstanceOf(RbdOptionError);
  });

  it('compareAndWrite: writes on a match, else the exact offset of the first difference and nothing written', async () => {
    for (const lba of [8, 2 * 8192 + 5]) {
      const before = pattern(BLOCK, lba);
      await backend.write(lba, before, { fua: false });
      const after = pattern(BLOCK, lba + 1);
      const wrong = before.slice();
      wrong[300] = (wrong[300]! + 1) & 0xff;
      expect(await backend.compareAndWrite(lba, wrong, after)).toBe(300);
      expect(await readBack(backend, lba, 1)).toEqual(before);
      expect(await backend.compareAndWrite(lba, before, after)).toBe(-1);
      expect(await readBack(backend, lba, 1)).toEqual(after);
    }
    // librbd 16 takes one 512-byte sector: more is EINVAL (installRbdCommands falls back).
    const refused = await backend
      .compareAndWrite(8, new Uint8Array(1024), new Uint8Array(1024))
      .catch((e) => e);
    expect(refused).toBeInstanceOf(BackendIoError);
    expect(refused.cause).toMatchObject({ code: 'EINVAL', errno: -22, syscall: 'rbd_aio_compare_and_write' });
  });

  it('keeps the event loop turning while 1000 calls are in flight (completions arrive off the loop)', async () => {
    const buffers = Array.from({ length: 1000 }, (_, i) => new Uint8Array(4096).fill(i & 0xff));
    const reads = buffers.map(() => new Uint8Array(4096));
    /** The longest event loop turn while `calls` complete (measured after they are submitted). */
    const longestTurn = async (calls: Promise<void>[]) => {
      let last = performance.now();
      let longest = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
      }, 1);
      await Promise.all(calls);
      clearInterval(timer);
      return longest;
    };
    const writing = await longestTurn(buffers.map((data, i) => backend.write(i * 8, data, { fua: false })));
    const reading = await longestTurn(reads.map((into, i) => backend.read(i * 8, into)));
    expect(reads.map((data) => data[4095])).toEqual(buffers.map((_, i) => i & 0xff));
    console.log(
      `1000 calls in flight: longest event loop turn ${writing.toFixed(1)} ms (writes), ${reading.toFixed(1)} ms (reads)`,
    );
    expect(Math.max(writing, reading)).toBeLessThan(250);
  });

  it('reports librbd failures as BackendIoError with the LBA and an RbdNativeError cause', async () => {
    const error = await backend.read(backend.blockCount, new Uint8Array(BLOCK)).catch((e) => e);
    expect(error).toBeInstanceOf(BackendIoError);
    expect(error.lba).toBe(backend.blockCount);
    expect(error.cause).toBeInstanceOf(RbdNativeError);
    expect(error.cause).toMatchObject({ code: 'EINVAL', errno: -22, syscall: 'rbd_aio_read' });
  });

  it('open fails with the errno of the call that failed', async () => {
    await expect(open({ image: 'no-such-image' })).rejects.toMatchObject({
      name: 'RbdNativeError',
      code: 'ENOENT',
      syscall: 'rbd_open',
      message: expect.stringContaining(`cannot open rbd image ${cluster.pool}/no-such-image`),
    });
    await expect(open({ pool: 'no-such-pool' })).rejects.toMatchObject({
      code: 'ENOENT',
      syscall: 'rados_ioctx_create',
    });
    await expect(open({ conf: `${cluster.dir}/missing.conf` })).rejects.toMatchObject({
      code: 'ENOENT',
      syscall: 'rados_conf_read_file',
    });
    await expect(open({ clientId: 'nobody' })).rejects.toMatchObject({ syscall: 'rados_connect' });
    await expect(open({ blockSize: 1000 })).rejects.toBeInstanceOf(RbdOptionError);
    await expect(open({ image: '' })).rejects.toBeInstanceOf(RbdOptionError);
  });

  it('a snapshot opens read-only and reads the data of its time', async () => {
    await backend.write(3000, pattern(BLOCK, 11), { fua: true });
    await cluster.rbd(['snap', 'create', `${cluster.pool}/${cluster.image}@s1`]);
    await backend.write(3000, pattern(BLOCK, 12), { fua: true });
    const snap = await open({ snapshot: 's1' });
    try {
      expect(snap.readOnly).toBe(true);
      expect(snap.name).toBe(`${cluster.pool}/${cluster.image}@s1`);
      expect(await readBack(snap, 3000, 1)).toEqual(pattern(BLOCK, 11));
      const unit = new LogicalUnit({ backend: snap, powerOnUnitAttention: false });
      expectCheck(await write10(unit, 3000, pattern(BLOCK, 13)), 'WRITE_PROTECTED');
    } finally {
      await snap.close();
    }
    expect(await readBack(backend, 3000, 1)).toEqual(pattern(BLOCK, 12));
  });

  it('opens an image in a RADOS namespace, with 4096-byte blocks', async () => {
    await cluster.rbd(['namespace', 'create', `${cluster.pool}/ns1`]);
    await cluster.rbd(['create', '--size', '8M', `${cluster.pool}/ns1/inner`]);
    const inner = await open({ namespace: 'ns1', image: 'inner', blockSize: 4096 });
    try {
      expect(inner.name).toBe(`${cluster.pool}/ns1/inner`);
      expect(inner.blockCount).toBe(2048);
      await inner.write(1, pattern(4096, 2), { fua: false });
      expect(await readBack(inner, 1, 1)).toEqual(pattern(4096, 2));
    } finally {
      await inner.close();
    }
  });

  it('follows a resize by another client (header watch), and refresh() reads the size on demand', async () => {
    await cluster.rbd(['create', '--size', '4M', `${cluster.pool}/growing`]);
    const growing = await open({ image: 'growing' });
    try {
      const resized = new Promise<number>((resolve) => growing.onResize(resolve));
      await cluster.rbd(['resize', '--size', '12M', `${cluster.pool}/growing`]);
      expect(await resized).toBe((12 << 20) / BLOCK);
      expect(growing.size).toBe(12 << 20);
      expect(await growing.refresh()).toBe(false);
      await growing.write(growing.blockCount - 1, pattern(BLOCK, 1), { fua: false });
    } finally {
      await growing.close();
    }
  });

  it('an exclusive opener keeps the lock: another client’s write fails instead of taking it', async () => {
    await cluster.rbd(['create', '--size', '4M', `${cluster.pool}/locked`]);
    const owner = await open({ image: 'locked', exclusive: true });
    const other = await open({ image: 'locked', timeoutSeconds: 5 });
    try {
      await owner.write(0, pattern(BLOCK, 1), { fua: false });
      const refused = await other.write(0, pattern(BLOCK, 2), { fua: false }).catch((e) => e);
      expect(refused).toBeInstanceOf(BackendIoError);
      expect(refused.cause).toMatchObject({ code: 'EROFS', syscall: 'rbd_aio_write2' });
      expect(await readBack(other, 0, 1)).toEqual(pattern(BLOCK, 1)); // reads need no lock
    } finally {
      await other.close();
      await owner.close();
    }
  });

  it('mappingStatus: allocation from the object map, a whole object at a time; discard frees it', async () => {
    await cluster.rbd(['create', '--size', '16M', `${cluster.pool}/sparse`]);
    const sparse = await open({ image: 'sparse' });
    const perObject = (4 << 20) / BLOCK; // 8192 blocks per 4 MiB object
    try {
      expect(await sparse.mappingStatus(0, 1 << 20)).toEqual({
        lba: 0,
        blocks: 4 * perObject,
        state: 'deallocated',
      });
      await sparse.write(perObject + 5, pattern(BLOCK, 3), { fua: true });
      expect(await sparse.mappingStatus(0, 1 << 20)).toEqual({
        lba: 0,
        blocks: perObject,
        state: 'deallocated',
      });
      expect(await sparse.mappingStatus(100, 1 << 20)).toEqual({
        lba: 100,
        blocks: perObject - 100,
        state: 'deallocated',
      });
      // The object holding the block counts as mapped from its first block to its last.
      expect(await sparse.mappingStatus(perObject, 1 << 20)).toEqual({
        lba: perObject,
        blocks: perObject,
        state: 'mapped',
      });
      expect(await sparse.mappingStatus(perObject + 7, 10)).toEqual({
        lba: perObject + 7,
        blocks: 10,
        state: 'mapped',
      });
      expect(await sparse.mappingStatus(2 * perObject, 1 << 20)).toEqual({
        lba: 2 * perObject,
        blocks: 2 * perObject,
        state: 'deallocated',
      });
      // Two neighbouring objects are one mapped extent.
      await sparse.write(2 * perObject, pattern(BLOCK, 4), { fua: true });
      expect(await sparse.mappingStatus(perObject, 1 << 20)).toEqual({
        lba: perObject,
        blocks: 2 * perObject,
        state: 'mapped',
      });
      // Discarding a whole object removes it: deallocated again, and it reads zeros (LBPRZ).
      await sparse.discard!(perObject, perObject);
      expect(await sparse.mappingStatus(perObject, 1 << 20)).toEqual({
        lba: perObject,
        blocks: perObject,
        state: 'deallocated',
      });
      expect(await readBack(sparse, perObject + 5, 1)).toEqual(new Uint8Array(BLOCK));

      // GET LBA STATUS(16) through the unit answers the same descriptors.
      const entry = table.get(0x9e, 0x12) as { name: string; encode(fields: never): Uint8Array };
      expect(entry.name).toBe('GET LBA STATUS');
      const getLbaStatus = (fields: never) => entry.encode(fields);
      const unit = new LogicalUnit({ backend: sparse, powerOnUnitAttention: false });
      const status = await exec(
        unit,
        getLbaStatus({ lba: 0, allocationLength: 64, control: 0 } as never),
        undefined,
        64,
      );
      expectGood(status);
      const data = status.dataIn!;
      const view = new DataView(data.buffer, data.byteOffset);
      expect(Number(view.getBigUint64(8))).toBe(0); // first descriptor: LBA 0
      expect(view.getUint32(16)).toBe(2 * perObject); // deallocated through object 1
      expect(data[20]! & 0x0f).toBe(1); // PROVISIONING STATUS 1h: deallocated
      expect(Number(view.getBigUint64(24))).toBe(2 * perObject);
      expect(view.getUint32(32)).toBe(perObject);
      expect(data[36]! & 0x0f).toBe(0); // mapped
    } finally {
      await sparse.close();
    }
  });

  it('close waits for the calls in flight, is idempotent, and later calls fail', async () => {
    const extra = await open();
    const inFlight = extra.write(4000, pattern(BLOCK, 4), { fua: false });
    const closed = extra.close();
    expect(extra.close()).toBe(closed);
    await inFlight;
    await closed;
    const after = await extra.read(0, new Uint8Array(BLOCK)).catch((e) => e);
    expect(after).toBeInstanceOf(BackendIoError);
    expect(after.cause).toBeInstanceOf(RbdClosedError);
    await expect(extra.refresh()).rejects.toBeInstanceOf(RbdClosedError);
  });
});

// --- SCSI through a LogicalUnit --------------------------------------------------------------

interface Outcome extends CommandResult {
  readonly decoded?: ReturnType<typeof decodeSense>;
}

const exec = async (
  unit: LogicalUnit,
  cdb: Uint8Array,
  dataOut?: Uint8Array,
  dataInLength = 0,
): Promise<Outcome> => {
  const result = await unit.execute({ cdb, dataOut, dataInLength, nexus: 'test' });
  return { ...result, decoded: result.sense ? decodeSense(result.sense) : undefined };
};

/** A CDB from @tcmu/scsi's own encoder for `opcode` (fields left out are 0 or false). */
const table = defaultOpcodeTable();
const cdb = (opcode: number, fields: Record<string, number | boolean>): Uint8Array => {
  const entry = table.get(opcode)!;
  return entry.encode!({ lba: 0, blocks: 0, ...fields } as never);
};
const write10 = (unit: LogicalUnit, lba: number, data: Uint8Array, fua = false) =>
  exec(unit, cdb(0x2a, { lba, blocks: data.length / BLOCK, fua }), data);
const read16 = (unit: LogicalUnit, lba: number, blocks: number) =>
  exec(unit, cdb(0x88, { lba, blocks }), undefined, blocks * BLOCK);
const compareAndWrite = (unit: LogicalUnit, lba: number, verify: Uint8Array, data: Uint8Array) =>
  exec(unit, cdb(0x89, { lba, blocks: verify.length / BLOCK }), Buffer.concat([verify, data]));

const expectGood = (outcome: Outcome) => {
  expect(outcome.decoded, 'sense').toBeUndefined();
  expect(outcome.status).toBe(0);
};
function expectCheck(outcome: Outcome, reason: SenseReasonName, information?: number): void {
  expect(outcome.status).toBe(2);
  const { key, asc, ascq } = SenseReasons[reason];
  expect(outcome.decoded).toMatchObject({ key, asc, ascq });
  if (information !== undefined) expect(Number(outcome.decoded!.information)).toBe(information);
}

describe('RbdBackend through LogicalUnit', () => {
  let unit: LogicalUnit;
  beforeAll(() => {
    unit = new LogicalUnit({ backend, powerOnUnitAttention: false });
    installRbdCommands(unit, backend);
  });

  it('WRITE, READ and VERIFY(16) with BYTCHK of patterns', async () => {
    const data = pattern(32 * BLOCK, 21);
    expectGood(await write10(unit, 5000, data));
    const read = await read16(unit, 5000, 32);
    expectGood(read);
    expect(read.dataIn).toEqual(data);
    const verify = cdb(0x8f, { lba: 5000, blocks: 32, byteCheck: 1 }); // compare with the Data-Out
    expectGood(await exec(unit, verify, data));
    const changed = data.slice();
    changed[BLOCK * 3 + 10] = changed[BLOCK * 3 + 10]! ^ 0xff;
    expectCheck(await exec(unit, verify, changed), 'MISCOMPARE_DURING_VERIFY_OPERATION', BLOCK * 3 + 10);
  });

  it('READ CAPACITY(16) reports the image, thin provisioned with zeros after UNMAP', async () => {
    const result = await exec(
      unit,
      Uint8Array.of(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0),
      undefined,
      32,
    );
    expectGood(result);
    const data = result.dataIn!;
    const view = new DataView(data.buffer, data.byteOffset);
    expect(view.getBigUint64(0)).toBe(BigInt(backend.blockCount - 1));
    expect(view.getUint32(8)).toBe(BLOCK);
    expect(data[14]! & 0xc0).toBe(0xc0); // LBPME, LBPRZ
  });

  it('UNMAP then reads zeros', async () => {
    expectGood(await write10(unit, 6000, pattern(16 * BLOCK, 2)));
    const list = encodeUnmapParameterList([
      { lba: 6001, blocks: 2 },
      { lba: 6010, blocks: 3 },
    ]);
    expectGood(await exec(unit, cdb(0x42, { parameterListLength: list.length }), list));
    const back = (await read16(unit, 6000, 16)).dataIn!;
    const zeros = (from: number, to: number) => back.subarray(from * BLOCK, to * BLOCK).every((b) => b === 0);
    expect([zeros(0, 1), zeros(1, 3), zeros(3, 10), zeros(10, 13), zeros(13, 16)]).toEqual([
      false,
      true,
      false,
      true,
      false,
    ]);
  });

  it('WRITE SAME(16) of a pattern, and with UNMAP of zeros', async () => {
    const block = pattern(BLOCK, 33);
    expectGood(await exec(unit, cdb(0x93, { lba: 7000, blocks: 40 }), block));
    const back = (await read16(unit, 7000, 40)).dataIn!;
    for (let i = 0; i < 40; i++) expect(back.subarray(i * BLOCK, (i + 1) * BLOCK)).toEqual(block);
    expectGood(await exec(unit, cdb(0x93, { lba: 7010, blocks: 10, unmap: true }), new Uint8Array(BLOCK)));
    const after = (await read16(unit, 7000, 40)).dataIn!;
    expect(after.subarray(10 * BLOCK, 20 * BLOCK).every((b) => b === 0)).toBe(true);
    expect(after.subarray(20 * BLOCK, 21 * BLOCK)).toEqual(block);
  });

  it('COMPARE AND WRITE through librbd: a match writes, a miscompare names the exact byte in INFORMATION', async () => {
    const before = pattern(BLOCK, 40);
    const after = pattern(BLOCK, 41);
    for (const lba of [8000, 3 * 8192 + 17]) {
      expectGood(await write10(unit, lba, before));
      const wrong = before.slice();
      wrong[123] = wrong[123]! ^ 1;
      expectCheck(await compareAndWrite(unit, lba, wrong, after), 'MISCOMPARE_DURING_VERIFY_OPERATION', 123);
      expect((await read16(unit, lba, 1)).dataIn).toEqual(before);
      expectGood(await compareAndWrite(unit, lba, before, after));
      expect((await read16(unit, lba, 1)).dataIn).toEqual(after);
      expectGood(await write10(unit, lba, before));
    }
  });

  it('COMPARE AND WRITE of several blocks (more than librbd 16 takes) by the built-in read-compare-write', async () => {
    const before = pattern(4 * BLOCK, 50);
    expectGood(await write10(unit, 8100, before));
    const wrong = before.slice();
    wrong[2 * BLOCK + 5] = wrong[2 * BLOCK + 5]! ^ 1;
    expectCheck(
      await compareAndWrite(unit, 8100, wrong, pattern(4 * BLOCK, 51)),
      'MISCOMPARE_DURING_VERIFY_OPERATION',
      2 * BLOCK + 5,
    );
    expectGood(await compareAndWrite(unit, 8100, before, pattern(4 * BLOCK, 51)));
    expect((await read16(unit, 8100, 4)).dataIn).toEqual(pattern(4 * BLOCK, 51));
  });

  it('SYNCHRONIZE CACHE(10/16) and FUA writes answer GOOD and the data reads back', async () => {
    expectGood(await write10(unit, 9000, pattern(8 * BLOCK, 60), true));
    expectGood(await exec(unit, cdb(0x8a, { lba: 9008, blocks: 8, fua: true }), pattern(8 * BLOCK, 61)));
    expectGood(await exec(unit, cdb(0x35, {})));
    expectGood(await exec(unit, cdb(0x91, {})));
    expect((await read16(unit, 9000, 16)).dataIn).toEqual(
      new Uint8Array(Buffer.concat([pattern(8 * BLOCK, 60), pattern(8 * BLOCK, 61)])),
    );
  });

  it('a resize of the image is a CAPACITY DATA HAS CHANGED unit attention, then the new capacity', async () => {
    await cluster.rbd(['create', '--size', '4M', `${cluster.pool}/resized`]);
    const image = await open({ image: 'resized' });
    const resizedUnit = new LogicalUnit({ backend: image, powerOnUnitAttention: false });
    const stop = installRbdCommands(resizedUnit, image);
    try {
      expectGood(await exec(resizedUnit, Uint8Array.of(0, 0, 0, 0, 0, 0))); // TEST UNIT READY: the nexus is known
      const resized = new Promise((resolve) => image.onResize(resolve));
      await cluster.rbd(['resize', '--size', '8M', `${cluster.pool}/resized`]);
      await resized;
      expectCheck(await exec(resizedUnit, Uint8Array.of(0, 0, 0, 0, 0, 0)), 'CAPACITY_DATA_HAS_CHANGED');
      const capacity = await exec(resizedUnit, Uint8Array.of(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), undefined, 8);
      expect(new DataView(capacity.dataIn!.buffer, capacity.dataIn!.byteOffset).getUint32(0)).toBe(
        (8 << 20) / BLOCK - 1,
      );
    } finally {
      stop();
      await image.close();
    }
  });
});

describe('the cluster going away and coming back', () => {
  it('with the OSD stopped an I/O fails within the op timeout with BUSY (transient ETIMEDOUT); it works again once the OSD is back', async () => {
    const timeoutSeconds = 3;
    const image = await open({ timeoutSeconds });
    const unit = new LogicalUnit({ backend: image, powerOnUnitAttention: false });
    try {
      expectGood(await write10(unit, 100, pattern(BLOCK, 1)));
      await cluster.stop(); // the OSD first, then the mon, by pid
      // All in object 0, which exists: a write allocating an object would wait a second
      // timeout for the object map (docs/rbd.md). FUA: were librbd's cache on (`config`), a
      // plain write could be acknowledged before the OSD had it.
      let started = performance.now();
      const [written, read, direct] = await Promise.all([
        write10(unit, 100, pattern(BLOCK, 2), true),
        read16(unit, 200, 1),
        image.write(300, pattern(BLOCK, 3), { fua: true }).catch((e) => e),
      ]);
      const ms = performance.now() - started;
      console.log(`cluster down: WRITE, READ and a backend write failed after ${ms.toFixed(0)} ms`);
      // Status BUSY with no sense: the initiator retries; not a medium error on good blocks.
      for (const result of [written, read]) {
        expect(result.status).toBe(ScsiStatus.BUSY);
        expect(result.sense).toBeUndefined();
      }
      expect(direct).toBeInstanceOf(BackendIoError);
      expect(direct.lba).toBe(300);
      expect(direct.transient).toBe(true);
      expect(direct.cause).toMatchObject({ code: 'ETIMEDOUT', errno: -110, syscall: 'rbd_aio_write2' });
      expect(ms).toBeLessThan(timeoutSeconds * 1000 + 3000);

      started = performance.now();
      await cluster.start();
      console.log(`cluster back in ${(performance.now() - started).toFixed(0)} ms`);
      expectGood(await write10(unit, 100, pattern(BLOCK, 4), true));
      expect((await read16(unit, 100, 1)).dataIn).toEqual(pattern(BLOCK, 4));
    } finally {
      await image.close();
    }
  }, 90_000);

  it('no librbd cache by default: with the OSD frozen a plain write is not acknowledged; with config rbd_cache it is', async () => {
    // Two images: two writers of one image would pass its exclusive lock to and fro.
    await cluster.rbd(['create', '--size', '8M', `${cluster.pool}/cache-off`]);
    const cached = await open({ timeoutSeconds: 3, config: { rbd_cache: true } });
    const plain = await open({ image: 'cache-off', timeoutSeconds: 3 });
    try {
      // Both objects exist, and both caches have seen a flush (write-around is write-through until then).
      for (const b of [cached, plain]) {
        await b.write(400, pattern(BLOCK, 5), { fua: false });
        await b.flush();
      }
      cluster.signal('osd.0', 'SIGSTOP');
      let acknowledged: unknown;
      try {
        const started = performance.now();
        await cached.write(400, pattern(BLOCK, 6), { fua: false });
        const cachedMs = performance.now() - started;
        acknowledged = await plain.write(400, pattern(BLOCK, 6), { fua: false }).catch((e) => e);
        console.log(
          `OSD frozen: cached write acknowledged in ${cachedMs.toFixed(1)} ms; uncached write failed`,
        );
        expect(cachedMs).toBeLessThan(1000);
      } finally {
        cluster.signal('osd.0', 'SIGCONT');
      }
      expect(acknowledged).toBeInstanceOf(BackendIoError);
      expect((acknowledged as BackendIoError).transient).toBe(true);
      await cached.flush();
      expect(await readBack(cached, 400, 1)).toEqual(pattern(BLOCK, 6));
    } finally {
      await cached.close();
      await plain.close();
    }
  }, 60_000);
});
