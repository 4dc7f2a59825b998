import { errnoOf } from './errors.js';
import type { HostFs, Roots } from './host-fs.js';

/**
 * Ownership marker of one configfs object we created: a JSON file in
 * `<roots.run>/owners/`, written BEFORE the object is created (so a crash never
 * leaves an object of ours without a marker) and removed after it is gone.
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
}

export class OwnerRegistry {
  private readonly dir: string;

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

  async claim(path: string): Promise<void> {
    await this.ensureDir();
    const record: OwnerRecord = {
      path,
      pid: this.pid,
      startTime: await processStartTime(this.fs, this.roots, this.pid),
      createdAt: new Date().toISOString(),
    };
    await this.fs.writeFile(this.fileOf(path), `${JSON.stringify(record)}\n`);
  }

  async release(path: string): Promise<void> {
    try {
      await this.fs.unlink(this.fileOf(path));
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
  };
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
