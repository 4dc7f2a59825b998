import { mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExitCode, ImageError } from './errors.js';
import { prepareImage } from './image.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcmufile-image-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<ImageError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ImageError);
  return error as ImageError;
}

describe('prepareImage', () => {
  it('creates a missing image sparse when a size is given', async () => {
    const path = join(dir, 'new.img');
    const image = await prepareImage({ path, size: 64 << 20, blockSize: 512, readOnly: false });
    expect(image).toEqual({ path, size: 64 << 20, created: true, fileSize: 64 << 20 });
    const info = await stat(path);
    expect(info.size).toBe(64 << 20);
    expect(info.blocks * 512).toBeLessThan(1 << 20); // sparse: almost nothing allocated
    expect(info.mode & 0o777).toBe(0o600);
  });

  it('refuses a symlinked image (64) unless --follow-symlinks, which serves its target', async () => {
    const target = join(dir, 'target.img');
    const link = join(dir, 'link.img');
    await writeFile(target, Buffer.alloc(4096));
    await symlink(target, link);
    const error = await rejection(
      prepareImage({ path: link, size: undefined, blockSize: 512, readOnly: false }),
    );
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(error.message).toMatch(/is a symbolic link/);
    expect(error.fix).toContain(target);
    const served = await prepareImage({
      path: link,
      size: undefined,
      blockSize: 512,
      readOnly: false,
      followSymlinks: true,
    });
    expect(served.size).toBe(4096);
  });

  it.each([
    ['qcow2', Buffer.from('QFI\xfb\0\0\0\x03', 'latin1'), 0],
    ['VMDK', Buffer.from('KDMV', 'latin1'), 0],
    ['VHDX', Buffer.from('vhdxfile', 'latin1'), 0],
    ['VDI', Buffer.from('\x7f\x10\xda\xbe', 'latin1'), 64],
  ])('refuses a %s image (65) unless --raw', async (name, magic, offset) => {
    const path = join(dir, `x.${name}`);
    const bytes = Buffer.alloc(65536);
    magic.copy(bytes, offset);
    await writeFile(path, bytes);
    const error = await rejection(prepareImage({ path, size: undefined, blockSize: 512, readOnly: false }));
    expect(error.exitCode).toBe(ExitCode.badImage);
    expect(error.message).toMatch(/image, not a raw disk image/);
    expect(error.fix).toMatch(/qemu-img convert -O raw/);
    const raw = await prepareImage({ path, size: undefined, blockSize: 512, readOnly: false, raw: true });
    expect(raw.size).toBe(65536);
  });

  it('serves an existing image at its own size', async () => {
    const path = join(dir, 'old.img');
    await writeFile(path, Buffer.alloc(8192, 1));
    expect(await prepareImage({ path, size: undefined, blockSize: 4096, readOnly: false })).toEqual({
      path,
      size: 8192,
      created: false,
      fileSize: 8192,
    });
  });

  it('serves the first --size bytes of a bigger image', async () => {
    const path = join(dir, 'big.img');
    await writeFile(path, Buffer.alloc(8192));
    expect(await prepareImage({ path, size: 4096, blockSize: 512, readOnly: false })).toMatchObject({
      size: 4096,
      fileSize: 8192,
      created: false,
    });
  });

  it('refuses an image smaller than --size (exit 65), without touching it', async () => {
    const path = join(dir, 'small.img');
    await writeFile(path, Buffer.alloc(4096));
    const error = await rejection(prepareImage({ path, size: 1 << 20, blockSize: 512, readOnly: false }));
    expect(error.exitCode).toBe(ExitCode.badImage);
    expect(error.message).toMatch(/smaller than --size 1 MiB/);
    expect(error.fix).toContain(`truncate -s ${1 << 20}`);
    expect((await stat(path)).size).toBe(4096);
  });

  it('refuses a missing image without --size (exit 66)', async () => {
    const error = await rejection(
      prepareImage({ path: join(dir, 'nope.img'), size: undefined, blockSize: 512, readOnly: false }),
    );
    expect(error.exitCode).toBe(ExitCode.noImage);
    expect(error.fix).toMatch(/--size/);
  });

  it('refuses to create an image in read-only mode', async () => {
    const error = await rejection(
      prepareImage({ path: join(dir, 'ro.img'), size: 4096, blockSize: 512, readOnly: true }),
    );
    expect(error.message).toMatch(/--read-only cannot create/);
  });

  it('refuses a directory, an empty image and a partial last block', async () => {
    expect(
      (await rejection(prepareImage({ path: dir, size: undefined, blockSize: 512, readOnly: false })))
        .message,
    ).toMatch(/not a regular file/);
    const empty = join(dir, 'empty.img');
    await writeFile(empty, '');
    expect(
      (await rejection(prepareImage({ path: empty, size: undefined, blockSize: 512, readOnly: false })))
        .message,
    ).toMatch(/is empty/);
    const odd = join(dir, 'odd.img');
    await writeFile(odd, Buffer.alloc(5000));
    const error = await rejection(
      prepareImage({ path: odd, size: undefined, blockSize: 4096, readOnly: false }),
    );
    expect(error.exitCode).toBe(ExitCode.badImage);
    expect(error.fix).toContain('--size 4096');
  });

  it('reports an unreadable path (exit 66) with the errno', async () => {
    const file = join(dir, 'file');
    await writeFile(file, 'x');
    // A path through a regular file fails with ENOTDIR, even for root.
    const error = await rejection(
      prepareImage({ path: join(file, 'disk.img'), size: undefined, blockSize: 512, readOnly: false }),
    );
    expect(error.exitCode).toBe(ExitCode.noImage);
    expect(error.message).toMatch(/not readable: ENOTDIR/);
  });

  it('cannot create an image in a missing directory (exit 73)', async () => {
    const error = await rejection(
      prepareImage({ path: join(dir, 'missing', 'disk.img'), size: 4096, blockSize: 512, readOnly: false }),
    );
    expect(error.exitCode).toBe(ExitCode.cannotCreate);
    expect(error.message).toMatch(/cannot create image .*ENOENT/);
  });
});
