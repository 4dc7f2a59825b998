import * as fsp from 'node:fs/promises';
import { join } from 'node:path';

export type EntryKind = 'file' | 'dir' | 'symlink' | 'other';

export interface DirEntry {
  readonly name: string;
  readonly kind: EntryKind;
}

/**
 * Every filesystem access of this package goes through this interface, so the
 * kernel can be replaced by `FakeKernel` (from `@tcmu/configfs/testing`) in tests.
 *
 * Contract: paths are absolute; failures reject with Node-style errors carrying
 * `code` (ENOENT, EEXIST, ENOTEMPTY, EBUSY, EINVAL, ENODEV, EPERM...), exactly as
 * configfs and sysfs report them. `writeFile` must reach the kernel as one write.
 */
export interface HostFs {
  readFile(path: string): Promise<string>;
  writeFile(path: string, data: string): Promise<void>;
  /** Creates a regular file that must not exist yet (O_CREAT|O_EXCL); rejects with EEXIST when it does. */
  createExclusive(path: string, data: string): Promise<void>;
  /** Not recursive: the parent must exist; rejects with EEXIST when present. */
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  readlink(path: string): Promise<string>;
  readdir(path: string): Promise<DirEntry[]>;
  /** True when something (even a dangling symlink) exists at `path`. */
  exists(path: string): Promise<boolean>;
  realpath(path: string): Promise<string>;
  unlink(path: string): Promise<void>;
}

/** Where the kernel's filesystems live. Point them at a temp tree to test. */
export interface Roots {
  /** configfs mount point; LIO lives in `<configfs>/target`. */
  readonly configfs: string;
  readonly sys: string;
  readonly dev: string;
  readonly proc: string;
  /** Our runtime directory for ownership markers (tmpfs: cleared at boot, like configfs). */
  readonly run: string;
}

export const DEFAULT_ROOTS: Roots = Object.freeze({
  configfs: '/sys/kernel/config',
  sys: '/sys',
  dev: '/dev',
  proc: '/proc',
  run: '/run/tcmu-node',
});

export function resolveRoots(partial?: Partial<Roots>): Roots {
  return Object.freeze({ ...DEFAULT_ROOTS, ...partial });
}

/** The real implementation over node:fs/promises. */
export class NodeHostFs implements HostFs {
  async readFile(path: string): Promise<string> {
    return fsp.readFile(path, 'utf8');
  }

  async writeFile(path: string, data: string): Promise<void> {
    // One write() of the whole string: configfs stores apply per write call.
    const handle = await fsp.open(path, 'w');
    try {
      const buffer = Buffer.from(data, 'utf8');
      const { bytesWritten } = await handle.write(buffer, 0, buffer.length, null);
      if (bytesWritten !== buffer.length) {
        throw Object.assign(new Error(`short write to ${path}: ${bytesWritten}/${buffer.length}`), {
          code: 'EIO',
        });
      }
    } finally {
      await handle.close();
    }
  }

  async createExclusive(path: string, data: string): Promise<void> {
    await fsp.writeFile(path, data, { flag: 'wx' });
  }

  async mkdir(path: string): Promise<void> {
    await fsp.mkdir(path);
  }

  async rmdir(path: string): Promise<void> {
    await fsp.rmdir(path);
  }

  async symlink(target: string, path: string): Promise<void> {
    await fsp.symlink(target, path);
  }

  async readlink(path: string): Promise<string> {
    return fsp.readlink(path);
  }

  async readdir(path: string): Promise<DirEntry[]> {
    const entries = await fsp.readdir(path, { withFileTypes: true });
    const result: DirEntry[] = [];
    for (const entry of entries) {
      let kind: EntryKind;
      if (entry.isDirectory()) kind = 'dir';
      else if (entry.isSymbolicLink()) kind = 'symlink';
      else if (entry.isFile()) kind = 'file';
      else {
        // DT_UNKNOWN from some filesystems: ask lstat.
        const stat = await fsp.lstat(join(path, entry.name)).catch(() => undefined);
        kind = stat?.isDirectory()
          ? 'dir'
          : stat?.isSymbolicLink()
            ? 'symlink'
            : stat?.isFile()
              ? 'file'
              : 'other';
      }
      result.push({ name: entry.name, kind });
    }
    return result;
  }

  async exists(path: string): Promise<boolean> {
    try {
      await fsp.lstat(path);
      return true;
    } catch {
      return false;
    }
  }

  async realpath(path: string): Promise<string> {
    return fsp.realpath(path);
  }

  async unlink(path: string): Promise<void> {
    await fsp.unlink(path);
  }
}
