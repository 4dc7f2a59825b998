import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { ConfigfsError, TimeoutError } from './errors.js';

/**
 * Mutual exclusion between every process (and every TargetManager) that changes one
 * configfs: held around each creation and removal, so choosing a name or an HBA
 * index, writing an owner marker and making the object happen as one step.
 */
export interface ConfigfsLock {
  /** Resolves once held; call the returned function to release it. */
  acquire(): Promise<() => Promise<void>>;
}

export interface SocketLockOptions {
  /** How long `acquire()` waits for another holder before failing (default 30 s). */
  readonly timeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The lock is a Linux abstract Unix socket named after the configfs mount point. bind()
 * either takes the name or fails with EADDRINUSE, atomically, and the kernel frees the
 * name when the holder exits or is killed: a crash never leaves a stale lock, so there
 * is no pid file to check and no race in breaking one. Abstract names belong to a
 * network namespace: processes sharing a configfs must share one (they do unless put in
 * separate namespaces on purpose).
 */
export class SocketLock implements ConfigfsLock {
  /** The abstract socket name (leading NUL). */
  readonly name: string;
  readonly #timeoutMs: number;

  constructor(configfsRoot: string, options: SocketLockOptions = {}) {
    const digest = createHash('sha256').update(configfsRoot).digest('hex').slice(0, 24);
    this.name = `\0tcmu-node/configfs/${digest}`;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  async acquire(): Promise<() => Promise<void>> {
    const deadline = Date.now() + this.#timeoutMs;
    let backoffMs = 1;
    for (;;) {
      const server = createServer();
      const code = await bind(server, this.name);
      if (code === undefined) {
        server.unref();
        return () => new Promise<void>((resolve) => server.close(() => resolve()));
      }
      if (code !== 'EADDRINUSE') {
        throw new ConfigfsError('LOCK_FAILED', `cannot take the configfs lock (bind: ${code})`);
      }
      if (Date.now() >= deadline)
        throw new TimeoutError('the configfs lock held by another process', this.#timeoutMs);
      await sleep(backoffMs);
      backoffMs = Math.min(backoffMs * 2, 25);
    }
  }
}

function bind(server: Server, name: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'EIO'));
    server.listen(name, () => resolve(undefined));
  });
}
