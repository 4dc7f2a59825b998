/**
 * An RBD image served as a TCMU device: @tcmu/device's openDevice over RbdBackend, with the
 * kernel played by @tcmu/ring's simulator (the @tcmu/device/testing harness), on a one-node
 * Ceph cluster of its own (tools/ceph/one-node.sh). Commands travel through the ring as the
 * kernel would send them; then the cluster freezes and thaws under the device. Needs root and
 * the Ceph packages (tools/bootstrap.sh): without them beforeAll fails with the line that
 * names the fix. The kernel run (the VM) is a later part of issue 13.
 */
import type { Device } from '@tcmu/device';
import { openDevice } from '@tcmu/device';
import { createHarness, type Harness } from '@tcmu/device/testing';
import { installRbdCommands, RbdBackend } from '@tcmu/rbd';
import {
  decodeSense,
  defaultOpcodeTable,
  encodeUnmapParameterList,
  type SenseReasonName,
  SenseReasons,
} from '@tcmu/scsi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../tools/ceph/cluster.js';

const BLOCK = 512;
let cluster: TestCluster;
let harness: Harness;
let backend: RbdBackend;
let device: Device;

const bytes = (length: number, seed: number) =>
  Uint8Array.from({ length }, (_, i) => (i * 7 + seed * 13) & 0xff);

/** A CDB from @tcmu/scsi's own encoder for `opcode` (fields left out are 0 or false). */
const table = defaultOpcodeTable();
const command = (opcode: number, fields: Record<string, number | boolean> = {}): Uint8Array => {
  const entry = table.get(opcode)!;
  return entry.encode!({ lba: 0, blocks: 0, ...fields } as never);
};
const write = (lba: number, data: Uint8Array, fua = false) =>
  harness.submit(device, { cdb: command(0x8a, { lba, blocks: data.length / BLOCK, fua }), dataOut: data });
const read = (lba: number, blocks: number) =>
  harness.submit(device, { cdb: command(0x88, { lba, blocks }), dataInLength: blocks * BLOCK });
const synchronizeCache = () => harness.submit(device, { cdb: command(0x91) });

function sense(result: { status: number; sense: Uint8Array }, reason?: SenseReasonName) {
  if (reason === undefined) {
    expect(result.status, result.sense.length ? JSON.stringify(decodeSense(result.sense)) : '').toBe(0);
    return undefined;
  }
  expect(result.status).toBe(2);
  const decoded = decodeSense(result.sense);
  const { key, asc, ascq } = SenseReasons[reason];
  expect({ key: decoded.key, asc: decoded.asc, ascq: decoded.ascq }).toEqual({ key, asc, ascq });
  return decoded;
}

beforeAll(async () => {
  cluster = await startCluster('rbd-device');
  console.log(`one-node Ceph cluster up in ${(cluster.startMs / 1000).toFixed(1)} s`);
  backend = await RbdBackend.open({
    ...cluster.openOptions,
    timeoutSeconds: 3,
  });
  harness = await createHarness();
  device = await openDevice({ name: 'rbd0', backend, platform: harness.platform });
  installRbdCommands(device.unit!, backend);
}, 180_000);

afterAll(async () => {
  await device?.close();
  await harness?.dispose();
  await backend?.close();
  await cluster?.wipe();
}, 60_000);

describe('an RBD image through the ring', () => {
  it('WRITE(16) and READ(16) of 1 block to 1 MiB, read back byte for byte', async () => {
    for (const blocks of [1, 8, 256, 2048]) {
      const data = bytes(blocks * BLOCK, blocks);
      sense(await write(blocks * 4, data));
      const back = await read(blocks * 4, blocks);
      sense(back);
      expect(Buffer.compare(back.dataIn, data), `${blocks} blocks`).toBe(0); // toEqual is slow on 1 MiB
    }
  });

  it('COMPARE AND WRITE: GOOD on a match, MISCOMPARE with the exact byte offset in INFORMATION', async () => {
    const before = bytes(BLOCK, 1);
    const after = bytes(BLOCK, 2);
    sense(await write(40_000, before));
    const wrong = before.slice();
    wrong[511] = wrong[511]! ^ 0x80;
    const caw = (verify: Uint8Array) =>
      harness.submit(device, {
        cdb: command(0x89, { lba: 40_000, blocks: 1 }),
        dataOut: new Uint8Array(Buffer.concat([verify, after])),
      });
    expect(Number(sense(await caw(wrong), 'MISCOMPARE_DURING_VERIFY_OPERATION')!.information)).toBe(511);
    sense(await caw(before));
    expect((await read(40_000, 1)).dataIn).toEqual(after);
  });

  it('UNMAP and WRITE SAME: zeros where unmapped, the pattern where written', async () => {
    sense(await write(50_000, bytes(32 * BLOCK, 3)));
    const list = encodeUnmapParameterList([{ lba: 50_004, blocks: 8 }]);
    sense(
      await harness.submit(device, {
        cdb: command(0x42, { parameterListLength: list.length }),
        dataOut: list,
      }),
    );
    const writeSame = command(0x93, { lba: 50_016, blocks: 8 });
    sense(await harness.submit(device, { cdb: writeSame, dataOut: bytes(BLOCK, 4) }));
    const back = (await read(50_000, 32)).dataIn;
    expect(back.subarray(4 * BLOCK, 12 * BLOCK).every((b) => b === 0)).toBe(true);
    for (let i = 16; i < 24; i++) expect(back.subarray(i * BLOCK, (i + 1) * BLOCK)).toEqual(bytes(BLOCK, 4));
    expect(back.subarray(0, 4 * BLOCK)).toEqual(bytes(32 * BLOCK, 3).subarray(0, 4 * BLOCK));
  });

  it('FUA writes and SYNCHRONIZE CACHE(16) answer GOOD', async () => {
    sense(await write(60_000, bytes(16 * BLOCK, 5), true));
    sense(await synchronizeCache());
    expect((await read(60_000, 16)).dataIn).toEqual(bytes(16 * BLOCK, 5));
  });
});

describe('the cluster freezing under the device', () => {
  it('a frozen mon alone stops no I/O (the OSD map is known)', async () => {
    cluster.signal('mon.a', 'SIGSTOP');
    try {
      sense(await write(70_000, bytes(BLOCK, 6), true));
      expect((await read(70_000, 1)).dataIn).toEqual(bytes(BLOCK, 6));
    } finally {
      cluster.signal('mon.a', 'SIGCONT');
    }
  });

  it('with mon and OSD frozen, commands answer BUSY (no sense) within the op timeout, and work once they thaw', async () => {
    // Blocks of objects that exist: a write that allocates an object first updates the object
    // map, and on its timeout invalidates it, which takes a second timeout (docs/rbd.md).
    sense(await write(80_000, bytes(8 * BLOCK, 7)));
    sense(await synchronizeCache());
    cluster.signal('osd.0', 'SIGSTOP');
    cluster.signal('mon.a', 'SIGSTOP');
    const started = performance.now();
    try {
      const [written, got] = await Promise.all([write(80_000, bytes(BLOCK, 8), true), read(80_004, 4)]);
      const ms = performance.now() - started;
      console.log(`cluster frozen: WRITE and READ answered BUSY after ${ms.toFixed(0)} ms`);
      for (const result of [written, got]) {
        expect(result.status).toBe(0x08);
        expect(result.sense.length).toBe(0);
      }
      expect(ms).toBeLessThan(3000 + 3000);
    } finally {
      cluster.signal('mon.a', 'SIGCONT');
      cluster.signal('osd.0', 'SIGCONT');
    }
    sense(await write(80_000, bytes(BLOCK, 9), true));
    expect((await read(80_000, 1)).dataIn).toEqual(bytes(BLOCK, 9));
  }, 30_000);
});
