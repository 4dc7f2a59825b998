/**
 * Several gateways on one image (docs/rbd.md "Several gateways"): one writer at a time,
 * enforced by the cluster. A gateway opens with the exclusive lock and keeps it; a second one
 * cannot open while the first lives; once the first hangs or dies, the next open waits for
 * the OSDs' watch timeout, breaks the lock and blocklists the old owner, whose writes then all
 * fail: two gateways never both write. On a one-node cluster of its own (tools/ceph).
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../../../tools/ceph/cluster.js';
import { RbdBackend, RbdNativeError } from './index.js';

const BLOCK = 512;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster('rbd-gateways');
}, 180_000);
afterAll(async () => {
  await cluster?.wipe();
}, 60_000);

const options = (image: string) => ({
  ...cluster.openOptions,
  image,
  timeoutSeconds: 5,
});
const block0 = async (backend: RbdBackend) => {
  const into = new Uint8Array(BLOCK);
  await backend.read(0, into);
  return into;
};

/** src/testing/gateway.ts in its own process, answering one line per request. */
function gatewayProcess(image: string) {
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    [
      '--conditions=@tcmu/source',
      '--import',
      'tsx',
      join(import.meta.dirname, 'testing', 'gateway.ts'),
      JSON.stringify(options(image)),
    ],
    { cwd: join(import.meta.dirname, '..') },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const lines: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const next = waiting.shift();
    if (next) next(line);
    else lines.push(line);
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const queued = lines.shift();
      if (queued !== undefined) return resolve(queued);
      waiting.push(resolve);
      child.once('exit', (code) => reject(new Error(`gateway exited ${code}\n${stderr}`)));
    });
  return {
    child,
    nextLine,
    request: (line: string) => {
      child.stdin.write(`${line}\n`);
      return nextLine();
    },
  };
}

describe('several gateways on one RBD image', () => {
  it('a second gateway cannot open the image while the first serves it, and can once it closed', async () => {
    await cluster.rbd(['create', '--size', '8M', `${cluster.pool}/shared`]);
    const first = await RbdBackend.open({ ...options('shared'), exclusive: true });
    const refused = await RbdBackend.open({ ...options('shared'), exclusive: true }).catch((error) => error);
    expect(refused).toBeInstanceOf(RbdNativeError);
    expect(refused).toMatchObject({ code: 'EROFS', syscall: 'rbd_lock_acquire' });
    await first.write(0, new Uint8Array(BLOCK).fill(0x11), { fua: true });
    await first.close();
    const second = await RbdBackend.open({ ...options('shared'), exclusive: true });
    try {
      expect(await block0(second)).toEqual(new Uint8Array(BLOCK).fill(0x11));
    } finally {
      await second.close();
    }
  });

  it('a hung gateway loses the image to the next one: its lock is broken, it is blocklisted, its writes fail', async () => {
    await cluster.rbd(['create', '--size', '8M', `${cluster.pool}/failover`]);
    const old = gatewayProcess('failover');
    try {
      expect(await old.nextLine()).toBe('ready');
      expect(await old.request('write 162')).toBe('ok'); // 0xa2
      old.child.kill('SIGSTOP'); // hung, or cut off from the cluster
      const started = performance.now();
      // Waits until the OSDs drop the old owner's watch (osd_client_watch_timeout, 30 s).
      const taker = await RbdBackend.open({ ...options('failover'), exclusive: true });
      const waitedS = (performance.now() - started) / 1000;
      console.log(`took the image over from a hung gateway in ${waitedS.toFixed(1)} s`);
      try {
        expect(await block0(taker)).toEqual(new Uint8Array(BLOCK).fill(0xa2));
        await taker.write(0, new Uint8Array(BLOCK).fill(0xb0), { fua: true });
        old.child.kill('SIGCONT');
        // The old gateway wakes up believing it owns the image: every write of its fails.
        const late = await old.request('write 163');
        expect(late).toMatch(/^failed (ESHUTDOWN|EBLOCKLISTED)$/); // blocklisted (108)
        const again = await old.request('write 164');
        expect(again).toMatch(/^failed (ESHUTDOWN|EBLOCKLISTED)$/);
        console.log(`the old gateway's writes after the takeover: ${late}, ${again}`);
        expect(await block0(taker)).toEqual(new Uint8Array(BLOCK).fill(0xb0));
      } finally {
        await taker.close();
      }
    } finally {
      old.child.kill('SIGCONT');
      old.child.stdin.end('close\n');
      await new Promise((resolve) =>
        old.child.exitCode === null ? old.child.once('exit', resolve) : resolve(0),
      );
    }
  }, 150_000);
});
