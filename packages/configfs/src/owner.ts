import { errnoOf, InUseError } from './errors.js';
import type { HostFs, Roots } from './host-fs.js';

/**
 * Ownership marker of one configfs object we created: a JSON file in
 * `<roots.run>/owners/`, created exclusively BEFORE the object is created (so a
 * crash never leaves an object of ours without a marker) and removed, by its owner
 * only, after the object is gone.
 * The owner is alive when `/proc/<pid>` exists with the same start time (field
 * 22 of /proc/<pid>/stat), which defeats pid reuse.
 */
export interface OwnerRecord {
  /** Path relative to `<configfs>/target`, e.g. `core/user_0/disk0` or `loopback/naa.…`. */
  readonly path: string;
  readonly pid: number;
  /** Start time of the owner in clock ticks since boot, or null if /proc was unreadable. */
  readonly startTime: string | null;
  readonly createdAt: string;
  /** What the owner recorded about the object (UserBackstoreOptions.note). */
  readonly note?: Readonly<Record<string, string>>;
}

export class OwnerRegistry {
  private readonly dir: string;
  /** Our own start time, read once (the same for the life of the process). */
  private ownStartTime: Promise<string | null> | undefined;

  constructor(
    private readonly fs: HostFs,
    private readonly roots: Roots,
    readonly pid: number,
  ) {
    this.dir = `${roots.run}/owners`;
  }

  private fileOf(path: string): string {
    return `${this.dir}/${encodeURIComponent(path)}.json`;
  }

  private startTime(): Promise<string | null> {
    this.ownStartTime ??= processStartTime(this.fs, this.roots, this.pid);
    return this.ownStartTime;
  }

  /** True when `record` names this registry's process (pid and start time). */
  async isOwn(record: OwnerRecord): Promise<boolean> {
    if (record.pid !== this.pid) return false;
    const own = await this.startTime();
    return record.startTime === null || own === null || record.startTime === own;
  }

  /**
   * Writes our marker for `path` with an exclusive create, so two processes can never
   * both believe they own it. A marker left by a dead owner (or a crash before its
   * content was written) is replaced; a live owner's marker makes this fail with
   * InUseError. Callers hold the configfs lock, so no one else replaces a stale
   * marker at the same time.
   */
  async claim(path: string, note?: Readonly<Record<string, string>>): Promise<void> {
    await this.ensureDir();
    const file = this.fileOf(path);
    const record: OwnerRecord = {
      path,
      pid: this.pid,
      startTime: await this.startTime(),
      createdAt: new Date().toISOString(),
      ...(note === undefined ? {} : { note }),
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.fs.createExclusive(file, `${JSON.stringify(record)}\n`);
        return;
      } catch (error) {
        if (errnoOf(error) !== 'EEXIST') throw error;
      }
      const existing = await this.read(path);
      if (existing !== undefined && (await this.isOwn(existing))) return;
      if (existing !== undefined && (await this.isAlive(existing))) {
        throw new InUseError(path, [`process ${existing.pid} (its owner)`]);
      }
      await this.unlinkIfPresent(file);
    }
    throw new InUseError(path, ['another process claiming it at the same time']);
  }

  /**
   * Removes our marker for `path`. Someone else's marker is left alone (a rollback or
   * removal never takes another process's claim with it); returns whether one was removed.
   */
  async release(path: string): Promise<boolean> {
    const existing = await this.read(path);
    if (existing === undefined || !(await this.isOwn(existing))) return false;
    await this.unlinkIfPresent(this.fileOf(path));
    return true;
  }

  /** Removes a dead owner's marker, if it is still exactly `record` and its owner still dead. */
  async releaseStale(record: OwnerRecord): Promise<boolean> {
    const existing = await this.read(record.path);
    if (
      existing === undefined ||
      existing.pid !== record.pid ||
      existing.startTime !== record.startTime ||
      existing.createdAt !== record.createdAt ||
      (await this.isAlive(existing))
    ) {
      return false;
    }
    await this.unlinkIfPresent(this.fileOf(record.path));
    return true;
  }

  private async unlinkIfPresent(file: string): Promise<void> {
    try {
      await this.fs.unlink(file);
    } catch (error) {
      if (errnoOf(error) !== 'ENOENT') throw error;
    }
  }

  async read(path: string): Promise<OwnerRecord | undefined> {
    try {
      return parseRecord(await this.fs.readFile(this.fileOf(path)));
    } catch {
      return undefined;
    }
  }

  async list(): Promise<OwnerRecord[]> {
    let entries: Awaited<ReturnType<HostFs['readdir']>>;
    try {
      entries = await this.fs.readdir(this.dir);
    } catch {
      return [];
    }
    const records: OwnerRecord[] = [];
    for (const entry of entries) {
      if (!entry.name.endsWith('.json')) continue;
      try {
        const record = parseRecord(await this.fs.readFile(`${this.dir}/${entry.name}`));
        if (record) records.push(record);
      } catch {
        // Unreadable or half-written marker: ignore, like a missing one.
      }
    }
    return records;
  }

  async isAlive(record: OwnerRecord): Promise<boolean> {
    const startTime = await processStartTime(this.fs, this.roots, record.pid);
    if (startTime === null) return false;
    return record.startTime === null || record.startTime === startTime;
  }

  private async ensureDir(): Promise<void> {
    const parts = this.dir.split('/').filter(Boolean);
    let current = '';
    for (const part of parts) {
      current += `/${part}`;
      if (await this.fs.exists(current)) continue;
      try {
        await this.fs.mkdir(current);
      } catch (error) {
        if (errnoOf(error) !== 'EEXIST') throw error;
      }
    }
  }
}

function parseRecord(text: string): OwnerRecord | undefined {
  const value = JSON.parse(text) as Partial<OwnerRecord>;
  if (typeof value.path !== 'string' || typeof value.pid !== 'number') return undefined;
  return {
    path: value.path,
    pid: value.pid,
    startTime: typeof value.startTime === 'string' ? value.startTime : null,
    createdAt: typeof value.createdAt === 'string' ? value.createdAt : '',
    ...(isNote(value.note) ? { note: value.note } : {}),
  };
}

function isNote(value: unknown): value is Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  return Object.values(value).every((v) => typeof v === 'string');
}

/** Field 22 (starttime) of /proc/<pid>/stat, or null when the process does not exist. */
export async function processStartTime(fs: HostFs, roots: Roots, pid: number): Promise<string | null> {
  let stat: string;
  try {
    stat = await fs.readFile(`${roots.proc}/${pid}/stat`);
  } catch {
    return null;
  }
  // comm (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // A zombie has exited: it holds nothing any more.
  if (rest[0] === 'Z' || rest[0] === 'X') return null;
  // rest[0] is field 3 (state), so field 22 is rest[19].
  return rest[19] ?? null;
}
