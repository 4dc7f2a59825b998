/**
 * The one-node Ceph cluster of tools/ceph/one-node.sh, for tests: each caller gets a cluster
 * of its own (its own scratch directory under .vm-artifacts/ and its own mon port), so test
 * files that stop daemons do not disturb each other.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = join(repo, 'tools', 'ceph', 'one-node.sh');

export type CephDaemon = 'mon.a' | 'osd.0';

export interface TestCluster {
  readonly dir: string;
  readonly conf: string;
  readonly keyring: string;
  readonly clientId: string;
  readonly pool: string;
  readonly image: string;
  /** RbdBackend.open()'s options for the cluster's image (conf, keyring, user, pool, image). */
  readonly openOptions: {
    readonly conf: string;
    readonly keyring: string;
    readonly clientId: string;
    readonly pool: string;
    readonly image: string;
  };
  /** How long `start()` took the first time, in ms. */
  readonly startMs: number;
  /** one-node.sh start: starts what is not running (idempotent); resolves when the image answers. */
  start(): Promise<void>;
  /** one-node.sh stop / wipe. */
  stop(): Promise<void>;
  wipe(): Promise<void>;
  /** Sends a signal to one daemon by its pid file (SIGTERM stops it, SIGSTOP/SIGCONT freeze it). */
  signal(daemon: CephDaemon, signal: NodeJS.Signals): void;
  /** The rbd CLI on this cluster, e.g. rbd(['resize', '--size', '128M', 'tcmu/disk0']). */
  rbd(args: readonly string[]): Promise<string>;
}

/** A free TCP port on 127.0.0.1 for the mon. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const lastLine = (text: string) => text.trim().split('\n').filter(Boolean).at(-1) ?? '';

/**
 * Makes and starts cluster `name` (in .vm-artifacts/ceph-<name> or `options.dir`, made afresh). Fails with
 * the script's last line, which names the fix (the apt-get line, or "run as root").
 */
export async function startCluster(
  name: string,
  timeoutSeconds = 10,
  options: { dir?: string } = {},
): Promise<TestCluster> {
  // In the VM: a directory on the guest's tmpfs, not on the 9p share (the mon's store syncs a lot).
  const dir = options.dir ?? join(repo, '.vm-artifacts', `ceph-${name}`);
  const env = {
    ...process.env,
    CEPH_DIR: dir,
    CEPH_MON_PORT: String(await freePort()),
    CEPH_TIMEOUT: String(timeoutSeconds),
  };
  const oneNode = async (command: string) => {
    try {
      return (await run('bash', [script, command], { env, maxBuffer: 16 << 20 })).stdout;
    } catch (error) {
      const { stderr, stdout } = error as { stderr?: string; stdout?: string };
      throw new Error(
        `the test Ceph cluster (CEPH_DIR=${dir}) failed: tools/ceph/one-node.sh ${command}: ` +
          `${lastLine(stderr ?? '') || lastLine(stdout ?? '') || String(error)} ` +
          '(the RBD tests need root and the Ceph packages: bash tools/bootstrap.sh)',
      );
    }
  };
  await oneNode('wipe');
  const started = performance.now();
  const printed = await oneNode('start');
  const startMs = performance.now() - started;
  const value = (key: string) => {
    const found = new RegExp(`^${key}=(.*)$`, 'm').exec(printed)?.[1];
    if (found === undefined) throw new Error(`one-node.sh start printed no ${key}=:\n${printed}`);
    return found;
  };
  const openOptions = {
    conf: value('CEPH_CONF'),
    keyring: value('CEPH_KEYRING'),
    clientId: value('CEPH_CLIENT_ID'),
    pool: value('CEPH_POOL'),
    image: value('CEPH_IMAGE'),
  };
  const { conf } = openOptions;
  return {
    dir,
    ...openOptions,
    openOptions,
    startMs,
    start: async () => void (await oneNode('start')),
    stop: async () => void (await oneNode('stop')),
    wipe: async () => void (await oneNode('wipe')),
    signal(daemon, signal) {
      process.kill(Number(readFileSync(join(dir, 'run', `${daemon}.pid`), 'utf8')), signal);
    },
    rbd: async (args) =>
      (await run('rbd', ['-c', conf, ...args], { env, timeout: timeoutSeconds * 3000 })).stdout,
  };
}
