import type { RbdBackend } from '@tcmu/rbd';
import { constants } from 'node:fs';
import { access, lstat, open, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ExitCode, ImageError } from './errors.js';
import { type BlockSize, formatBytes } from './size.js';

export interface ImageRequest {
  path: string;
  /** Bytes the disk should have; required to create a missing image. */
  size: number | undefined;
  blockSize: BlockSize;
  readOnly: boolean;
  /** Serve the target of a symlinked IMAGE (refused otherwise: it may be swapped under us). */
  followSymlinks?: boolean;
  /** Serve IMAGE as raw bytes even when it starts like a qcow2, VMDK, VHD(X) or VDI image. */
  raw?: boolean;
}

export interface PreparedImage {
  path: string;
  /** Bytes served: --size, or the whole image. */
  size: number;
  /** The image did not exist and was created sparse. */
  created: boolean;
  /** The file is bigger than the disk: only its first `size` bytes are served. */
  fileSize: number;
  /** An rbd: image, already open (rbd-image.ts prepareRbdImage). */
  rbd?: RbdBackend;
}

/**
 * Makes sure IMAGE can back the disk: creates a sparse file when it is missing and a size is
 * given, refuses an image smaller than --size, a size that is not whole blocks, a directory or
 * device, and an image we cannot read (or write, unless --read-only).
 */
export async function prepareImage(request: ImageRequest): Promise<PreparedImage> {
  const { path, size, blockSize, readOnly } = request;
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    if (!request.followSymlinks && (await lstat(path)).isSymbolicLink()) {
      throw new ImageError(`image ${path} is a symbolic link`, ExitCode.usage, {
        fix: `Serve the file itself (${await realpath(path).catch(() => 'its target')}), or pass --follow-symlinks.`,
      });
    }
    info = await stat(path);
  } catch (error) {
    if (error instanceof ImageError) throw error;
    if (errnoOf(error) !== 'ENOENT') throw unreadable(path, error);
    if (size === undefined) {
      throw new ImageError(`image ${path} does not exist`, ExitCode.noImage, {
        fix: `Give --size to create it sparse: tcmufile serve ${path} --size 1G`,
      });
    }
    if (readOnly) {
      throw new ImageError(`image ${path} does not exist and --read-only cannot create it`, ExitCode.noImage);
    }
    await createSparse(path, size);
    return { path, size, created: true, fileSize: size };
  }
  if (!info.isFile()) {
    throw new ImageError(`image ${path} is not a regular file`, ExitCode.noImage, {
      fix: 'Serve an image file; to re-export a block device use the kernel iblock backstore instead.',
    });
  }
  await checkAccess(path, readOnly);
  if (!request.raw) await refuseImageFormats(path);
  const fileSize = info.size;
  if (size !== undefined && fileSize < size) {
    throw new ImageError(
      `image ${path} is ${formatBytes(fileSize)} (${fileSize} bytes), smaller than --size ${formatBytes(size)} (${size} bytes)`,
      ExitCode.badImage,
      { fix: `Grow it first (truncate -s ${size} ${path}) or pass a smaller --size.` },
    );
  }
  const served = size ?? fileSize;
  if (served === 0) {
    throw new ImageError(`image ${path} is empty`, ExitCode.badImage, {
      fix: 'Pass --size to give it a size.',
    });
  }
  if (served % blockSize !== 0) {
    const whole = served - (served % blockSize);
    throw new ImageError(
      `image ${path} is ${served} bytes, not a multiple of the ${blockSize}-byte block size`,
      ExitCode.badImage,
      {
        fix: whole > 0 ? `Serve whole blocks with --size ${whole}.` : 'Grow the image to at least one block.',
      },
    );
  }
  return { path, size: served, created: false, fileSize };
}

/** Container formats whose header would be served as the disk's first blocks (qemu's probes). */
const FORMAT_MAGICS: ReadonlyArray<{ name: string; offset: number; magic: string }> = [
  { name: 'qcow2 (or qcow)', offset: 0, magic: 'QFI\xfb' },
  { name: 'VMDK', offset: 0, magic: 'KDMV' },
  { name: 'VMDK descriptor', offset: 0, magic: '# Disk DescriptorFile' },
  { name: 'VHDX', offset: 0, magic: 'vhdxfile' },
  { name: 'VHD (dynamic)', offset: 0, magic: 'conectix' },
  { name: 'VDI', offset: 64, magic: '\x7f\x10\xda\xbe' },
];

async function refuseImageFormats(path: string): Promise<void> {
  const head = new Uint8Array(68);
  const handle = await open(path, 'r');
  try {
    await handle.read(head, 0, head.length, 0);
  } finally {
    await handle.close();
  }
  const text = Buffer.from(head).toString('latin1');
  for (const { name, offset, magic } of FORMAT_MAGICS) {
    if (text.startsWith(magic, offset)) {
      throw new ImageError(`image ${path} is a ${name} image, not a raw disk image`, ExitCode.badImage, {
        fix: `Convert it (qemu-img convert -O raw ${path} disk.img), or pass --raw to serve its bytes as they are.`,
      });
    }
  }
}

async function createSparse(path: string, size: number): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // 'wx': never truncate a file that appeared since the stat.
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    throw new ImageError(`cannot create image ${path}: ${messageOf(error)}`, ExitCode.cannotCreate, {
      cause: error,
    });
  }
  try {
    await handle.truncate(size);
  } catch (error) {
    throw new ImageError(
      `cannot size image ${path} to ${size} bytes: ${messageOf(error)}`,
      ExitCode.cannotCreate,
      {
        cause: error,
      },
    );
  } finally {
    await handle.close();
  }
  // The new name must survive a crash too: fsync the directory that holds it.
  const directory = await open(dirname(path), 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

async function checkAccess(path: string, readOnly: boolean): Promise<void> {
  try {
    await access(path, constants.R_OK);
  } catch (error) {
    throw unreadable(path, error);
  }
  if (readOnly) return;
  try {
    await access(path, constants.W_OK);
  } catch (error) {
    throw new ImageError(`image ${path} is not writable: ${messageOf(error)}`, ExitCode.noImage, {
      fix: 'Fix its permissions, or serve it with --read-only.',
      cause: error,
    });
  }
}

function unreadable(path: string, error: unknown): ImageError {
  return new ImageError(`image ${path} is not readable: ${messageOf(error)}`, ExitCode.noImage, {
    fix: `Check the path and its permissions (ls -l ${path}).`,
    cause: error,
  });
}

function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function messageOf(error: unknown): string {
  const code = errnoOf(error);
  const message = error instanceof Error ? error.message : String(error);
  return code ? `${code} (${message.replace(/^[A-Z]+: /, '').split(',')[0]})` : message;
}
