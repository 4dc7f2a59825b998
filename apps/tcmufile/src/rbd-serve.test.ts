/**
 * `tcmufile serve rbd:POOL/IMAGE` and `tcmufile doctor rbd:POOL/IMAGE` against a real one-node
 * Ceph cluster of its own (tools/ceph/one-node.sh; needs root and the Ceph packages, which
 * tools/bootstrap.sh installs). serve() runs as main() runs it, with @tcmu/device's fake kernel
 * (the ring simulator) in place of the VM's: the kernel run is tests/kernel's.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { Device } from '@tcmu/device';
import { createHarness, type Harness, rw10 } from '@tcmu/device/testing';
import { decodeSense } from '@tcmu/scsi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../../../tools/ceph/cluster.js';
import { parseCommandLine, type ServeCommand } from './args.js';
import { ExitCode } from './errors.js';
import { prepareImage } from './image.js';
import type { Logger } from './log.js';
import { openImageDevice, openRbdImageDevice } from './open-device.js';
import { checkRbdClient, prepareRbdImage } from './rbd-image.js';
import { type ServedDevice, serve } from './serve.js';

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const readCapacity16 = Uint8Array.of(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);

let cluster: TestCluster;
let harness: Harness;
beforeAll(async () => {
  cluster = await startCluster('tcmufile-rbd', 3);
  harness = await createHarness();
}, 180_000);
afterAll(async () => {
  await harness?.dispose();
  await cluster?.wipe();
}, 60_000);

const argv = (image: string) => [
  'serve',
  image,
  '--ceph-conf',
  cluster.conf,
  '--keyring',
  cluster.keyring,
  '--id',
  cluster.clientId,
  '--name',
  'rbd-cli',
];

/** A serve that must fail before it opens a device: resolves with its error. */
async function refusedServe(command: ServeCommand): Promise<unknown> {
  const opened: unknown[] = [];
  const error = await serve(command, {
    checkEnvironment: async () => {},
    prepareImage,
    prepareRbdImage,
    openDevice: async (request) => {
      opened.push(request);
      return openImageDevice(request);
    },
    waitForStop: () => new Promise(() => {}),
    writeOut: () => {},
    writeStatus: undefined,
    logger: silent,
    statusIntervalMs: 10_000,
    now: () => 0,
    setInterval: () => ({}),
    clearInterval: () => {},
  }).then(
    () => new Error('serve did not fail'),
    (caught: unknown) => caught,
  );
  expect(opened).toEqual([]);
  return error;
}

describe('tcmufile doctor rbd:POOL/IMAGE', () => {
  it('passes every client check for the cluster’s image', async () => {
    const checks = await checkRbdClient(cluster.openOptions, 3);
    expect(checks.map((c) => [c.id, c.ok])).toEqual([
      ['rbd:librbd', true],
      ['rbd:conf', true],
      ['rbd:keyring', true],
      ['rbd:cluster', true],
      ['rbd:image', true],
    ]);
    expect(checks.at(-1)!.detail).toBe(`RBD image ${cluster.pool}/${cluster.image} exists (64 MiB)`);
  });

  it('a missing image fails the image check with the rbd create line; the cluster check passes', async () => {
    const checks = await checkRbdClient({ ...cluster.openOptions, image: 'missing' }, 3);
    expect(checks.slice(-2).map((c) => [c.id, c.ok])).toEqual([
      ['rbd:cluster', true],
      ['rbd:image', false],
    ]);
    expect(checks.at(-1)!.fix).toBe(`Create it: rbd create ${cluster.pool}/missing --size 1G`);
  });

  it('a wrong key fails the cluster check; an unreadable keyring fails before any connection', async () => {
    const wrongKey = `${cluster.dir}/wrong.keyring`;
    // A well-formed key that is not the user's (ceph-authtool makes a fresh one): cephx says EACCES.
    const key = (await promisify(execFile)('ceph-authtool', ['--gen-print-key'])).stdout.trim();
    await writeFile(wrongKey, `[client.${cluster.clientId}]\n\tkey = ${key}\n`);
    const refused = await checkRbdClient({ ...cluster.openOptions, keyring: wrongKey }, 3);
    expect(refused.at(-1)).toMatchObject({ id: 'rbd:cluster', ok: false });
    expect(refused.at(-1)!.detail).toBe('the cluster refused client.admin (EACCES)');
    const missing = await checkRbdClient({ ...cluster.openOptions, keyring: '/nonexistent' }, 3);
    expect(missing.at(-1)).toMatchObject({
      id: 'rbd:keyring',
      ok: false,
      detail: 'keyring /nonexistent cannot be read',
    });
  });
});

describe('tcmufile serve rbd:POOL/IMAGE', () => {
  it('serves the image through the ring; COMPARE AND WRITE is librbd’s; an rbd resize reaches the kernel and the initiator; a second gateway exits 75', async () => {
    const command = parseCommandLine(argv(`rbd:${cluster.pool}/${cluster.image}`)) as ServeCommand;
    let served: ServedDevice | undefined;
    let stop!: (signal: string) => void;
    const stopped = new Promise<string>((resolve) => {
      stop = resolve;
    });
    const out: string[] = [];
    const exit = serve(command, {
      checkEnvironment: async () => {},
      prepareImage,
      prepareRbdImage,
      openDevice: async (request) => {
        served = await openRbdImageDevice(request, request.image.rbd!, { platform: harness.platform });
        return served;
      },
      waitForStop: () => stopped,
      writeOut: (text) => out.push(text),
      writeStatus: undefined,
      logger: silent,
      statusIntervalMs: 10_000,
      now: () => performance.now(),
      setInterval: (callback, ms) => setInterval(callback, ms),
      clearInterval: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
    });
    for (let i = 0; i < 200 && out.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const device = served!.device as Device;
    try {
      expect(device.blockCount).toBe((64 << 20) / 512);
      const data = new Uint8Array(8192).map((_, i) => (i * 31) & 0xff);
      expect((await harness.submit(device, { cdb: rw10(0x2a, 1000, 16), dataOut: data })).status).toBe(0);
      const back = await harness.submit(device, { cdb: rw10(0x28, 1000, 16), dataInLength: 8192 });
      expect(back.status).toBe(0);
      expect(Buffer.from(back.dataIn).equals(Buffer.from(data))).toBe(true);
      // The bytes are in the cluster: rbd export of the same range.
      const exported = `${cluster.dir}/export.img`;
      await cluster.rbd(['export', `${cluster.pool}/${cluster.image}`, exported]);
      expect(
        (await readFile(exported)).subarray(1000 * 512, 1000 * 512 + 8192).equals(Buffer.from(data)),
      ).toBe(true);

      // COMPARE AND WRITE of one block, a miscompare at byte 5 (rbd_aio_compare_and_write).
      const compare = Buffer.concat([Buffer.from(data.subarray(0, 512)), Buffer.alloc(512, 0xee)]);
      compare[5] = compare[5]! ^ 0xff;
      const caw = Uint8Array.of(0x89, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0, 0);
      const miss = await harness.submit(device, { cdb: caw, dataOut: compare });
      expect(decodeSense(miss.sense)).toMatchObject({ key: 0x0e, asc: 0x1d, information: 5 });

      // Another client grows the image: the device, the kernel's dev_size and READ CAPACITY follow.
      await cluster.rbd(['resize', '--size', '96M', `${cluster.pool}/${cluster.image}`]);
      for (let i = 0; i < 100 && device.blockCount !== (96 << 20) / 512; i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(device.blockCount).toBe((96 << 20) / 512);
      expect((await readFile(`${device.backstorePath}/attrib/dev_size`, 'utf8')).trim()).toBe(
        String(96 << 20),
      );
      const attention = await harness.submit(device, { cdb: readCapacity16, dataInLength: 32 });
      expect(decodeSense(attention.sense)).toMatchObject({ key: 0x06, asc: 0x2a, ascq: 0x09 });
      const capacity = await harness.submit(device, { cdb: readCapacity16, dataInLength: 32 });
      expect(Buffer.from(capacity.dataIn).readBigUInt64BE(0)).toBe(BigInt((96 << 20) / 512 - 1));

      // A second gateway for the same image is refused while this one holds its lock.
      const second = parseCommandLine([
        ...argv(`rbd:${cluster.pool}/${cluster.image}`),
        '--name',
        'rbd-two',
      ]) as ServeCommand;
      await expect(refusedServe(second)).resolves.toMatchObject({
        exitCode: ExitCode.inUse,
        message: `RBD image ${cluster.pool}/${cluster.image} is served by another gateway (a live client holds its exclusive lock)`,
      });
    } finally {
      stop('SIGTERM');
      expect(await exit).toBe(ExitCode.ok);
    }
    expect(device.state).toBe('closed');
  }, 120_000);

  it('a missing image exits 66 with the rbd create line, before anything is created', async () => {
    const command = parseCommandLine(argv(`rbd:${cluster.pool}/absent`)) as ServeCommand;
    await expect(refusedServe(command)).resolves.toMatchObject({
      exitCode: ExitCode.noImage,
      message: `RBD image ${cluster.pool}/absent does not exist`,
      fix: `Create it: rbd create ${cluster.pool}/absent --size 1G`,
    });
  });
});
