import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { SocketLock, TimeoutError } from './index.js';

const root = `/test/configfs-${process.pid}-${Math.random()}`;

/** Another process holding the lock: binds the same abstract name, prints once it holds it. */
async function holder(name: string) {
  const child = spawn(
    process.execPath,
    ['-e', `require('node:net').createServer().listen(${JSON.stringify(name)}, () => console.log('held'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [chunk] = await once(child.stdout, 'data');
  expect(String(chunk)).toContain('held');
  return child;
}

describe('SocketLock', () => {
  it('serializes holders in one process, in order', async () => {
    const lock = new SocketLock(root);
    const order: string[] = [];
    const hold = async (label: string, ms: number) => {
      const release = await lock.acquire();
      order.push(`${label}+`);
      await new Promise((resolve) => setTimeout(resolve, ms));
      order.push(`${label}-`);
      await release();
    };
    await Promise.all([hold('a', 30), hold('b', 1)]);
    expect(order).toEqual(['a+', 'a-', 'b+', 'b-']);
  });

  it('waits for another process, times out with TimeoutError, and is free once that process is killed', async () => {
    const lock = new SocketLock(root, { timeoutMs: 150 });
    const child = await holder(lock.name);
    try {
      await expect(lock.acquire()).rejects.toBeInstanceOf(TimeoutError);
      child.kill('SIGKILL');
      await once(child, 'exit');
      const release = await lock.acquire(); // nothing stale to break: the kernel freed the name
      await release();
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('gives different configfs roots different locks', async () => {
    const a = new SocketLock(`${root}/a`);
    const b = new SocketLock(`${root}/b`);
    expect(a.name).not.toBe(b.name);
    const releaseA = await a.acquire();
    const releaseB = await b.acquire();
    await releaseB();
    await releaseA();
  });
});
