import { AlreadyExistsError, ConfigfsError, errnoOf, KernelError, TimeoutError } from './errors.js';
import type { HostFs, Roots } from './host-fs.js';
import type { WaitOptions } from './model.js';
import type { Transaction } from './transaction.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * What the parts of TargetManager share: the filesystem, where things live, and the
 * configfs operations every part needs, each failure turned into a typed error.
 */
export class ConfigfsContext {
  /** `<configfs>/target`. */
  readonly targetRoot: string;

  constructor(
    readonly fs: HostFs,
    readonly roots: Roots,
  ) {
    this.targetRoot = `${roots.configfs}/target`;
  }

  async ensureDir(path: string): Promise<void> {
    if (await this.fs.exists(path)) return;
    try {
      await this.fs.mkdir(path);
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') throw new KernelError('mkdir', path, errnoOf(error), error);
    }
  }

  async mkdir(tx: Transaction, path: string): Promise<void> {
    try {
      await this.fs.mkdir(path);
    } catch (error) {
      if (errnoOf(error) === 'EEXIST') throw new AlreadyExistsError('directory', path);
      throw new KernelError('mkdir', path, errnoOf(error), error);
    }
    tx.add(`rmdir ${path}`, () => this.rmdirIfPresent(path));
  }

  async link(tx: Transaction, target: string, path: string): Promise<void> {
    try {
      await this.fs.symlink(target, path);
    } catch (error) {
      throw new KernelError('symlink', `${path} -> ${target}`, errnoOf(error), error);
    }
    tx.add(`unlink ${path}`, async () => {
      try {
        await this.fs.unlink(path);
      } catch (error) {
        if (errnoOf(error) !== 'ENOENT') throw error;
      }
    });
  }

  async rmdirIfPresent(path: string): Promise<void> {
    try {
      await this.fs.rmdir(path);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return;
      throw new KernelError('rmdir', path, errnoOf(error), error);
    }
  }

  async write(path: string, data: string): Promise<void> {
    try {
      await this.fs.writeFile(path, data);
    } catch (error) {
      throw new KernelError(
        `write "${data.length > 60 ? `${data.slice(0, 60)}…` : data}" to`,
        path,
        errnoOf(error),
        error,
      );
    }
  }

  async read(path: string): Promise<string> {
    try {
      return await this.fs.readFile(path);
    } catch (error) {
      throw new KernelError('read', path, errnoOf(error), error);
    }
  }

  /** Names of the subdirectories of `path`, sorted; none when it is missing. */
  async listDirs(path: string): Promise<string[]> {
    const entries = await this.fs.readdir(path).catch(() => []);
    return entries
      .filter((entry) => entry.kind === 'dir')
      .map((entry) => entry.name)
      .sort();
  }

  async poll<T>(what: string, options: WaitOptions, probe: () => Promise<T | undefined>): Promise<T> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const intervalMs = options.intervalMs ?? 50;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = await probe();
      if (found !== undefined) return found;
      if (Date.now() >= deadline) throw new TimeoutError(what, timeoutMs);
      await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
    }
  }
}

/** `<major>:<minor>` of a sysfs `dev` file. */
export function parseDevNumbers(text: string, path: string): [number, number] {
  const match = /^(\d+):(\d+)\s*$/.exec(text);
  if (!match) throw new ConfigfsError('BAD_DEV', `unexpected device numbers "${text.trim()}" in ${path}`);
  return [Number(match[1]), Number(match[2])];
}
