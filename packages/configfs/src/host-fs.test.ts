import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NodeHostFs, resolveRoots } from './host-fs.js';

let dir: string;
const fs = new NodeHostFs();
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hostfs-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('NodeHostFs', () => {
  it('does what the HostFs contract says on a real tree', async () => {
    await fs.mkdir(`${dir}/d`);
    await expect(fs.mkdir(`${dir}/d`)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(fs.mkdir(`${dir}/x/y`)).rejects.toMatchObject({ code: 'ENOENT' });
    await fs.writeFile(`${dir}/d/f`, 'hello');
    expect(await fs.readFile(`${dir}/d/f`)).toBe('hello');
    await fs.symlink(`${dir}/d`, `${dir}/link`);
    await fs.symlink(`${dir}/missing`, `${dir}/dangling`);
    expect(await fs.exists(`${dir}/dangling`)).toBe(true);
    expect(await fs.exists(`${dir}/missing`)).toBe(false);
    expect(await fs.readlink(`${dir}/link`)).toBe(`${dir}/d`);
    expect(await fs.realpath(`${dir}/link/f`)).toBe(await fs.realpath(`${dir}/d/f`));
    const entries = (await fs.readdir(dir)).sort((a, b) => a.name.localeCompare(b.name));
    expect(entries).toEqual([
      { name: 'd', kind: 'dir' },
      { name: 'dangling', kind: 'symlink' },
      { name: 'link', kind: 'symlink' },
    ]);
    await expect(fs.rmdir(`${dir}/d`)).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await fs.unlink(`${dir}/d/f`);
    await fs.rmdir(`${dir}/d`);
    expect(await fs.exists(`${dir}/d`)).toBe(false);
  });

  it('resolves roots with defaults', () => {
    expect(resolveRoots({ configfs: '/tmp/c' })).toEqual({
      configfs: '/tmp/c',
      sys: '/sys',
      dev: '/dev',
      proc: '/proc',
      run: '/run/tcmu-node',
    });
  });
});
