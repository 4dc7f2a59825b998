// examples/memory-disk.ts as a user runs it, on the real kernel (kernel-vm, as root): a spawned
// process, its /dev/sdX used with dd, then SIGTERM: exit 0 and the disk gone.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const here = fileURLToPath(new URL('.', import.meta.url));

// tsx loads the sources on an emulated CPU: allow minutes.
it(
  'memory-disk.ts serves a 64 MiB disk that dd reads back, and SIGTERM removes it',
  { timeout: 900_000 },
  async () => {
    const child = spawn(
      process.execPath,
      ['--conditions=@tcmu/source', '--import', 'tsx', 'memory-disk.ts'],
      {
        cwd: here,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    const dir = await mkdtemp(join(tmpdir(), 'tcmu-example-kt-'));
    try {
      while (!stdout.includes('\n') && child.exitCode === null)
        await new Promise((done) => setTimeout(done, 100));
      const disk = /^serving (\/dev\/sd[a-z]+) \(ramdisk0\)/.exec(stdout)?.[1];
      expect(disk, `stdout: ${stdout}\nstderr: ${stderr}`).toBeDefined();
      expect(execFileSync('blockdev', ['--getsize64', disk!], { encoding: 'utf8' }).trim()).toBe(
        String(64 << 20),
      );

      const pattern = randomBytes(1 << 20);
      const written = join(dir, 'pattern');
      const readBack = join(dir, 'read');
      await writeFile(written, pattern);
      const dd = (...args: string[]) => execFileSync('dd', [...args, 'bs=1M', 'count=1', 'status=none']);
      dd(`if=${written}`, `of=${disk}`, 'seek=5', 'oflag=direct', 'conv=fsync');
      dd(`if=${disk}`, `of=${readBack}`, 'skip=5', 'iflag=direct');
      expect((await readFile(readBack)).equals(pattern)).toBe(true);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(`/sys/block/${basename(disk!)}`)).toBe(false);
    } finally {
      // A failed test must not leave a server behind for the next kernel test file.
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    }
  },
);
