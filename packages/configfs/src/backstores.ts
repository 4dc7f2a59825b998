import { randomUUID } from 'node:crypto';
import { type ConfigfsContext, parseDevNumbers } from './context.js';
import {
  type Attributes,
  type BackstorePlugin,
  parseBackstoreInfo,
  renderControl,
  validateAttributes,
} from './control.js';
import {
  AlreadyExistsError,
  ConfigfsError,
  errnoOf,
  InvalidOptionError,
  KernelError,
  NotFoundError,
} from './errors.js';
import type { DirEntry } from './host-fs.js';
import type {
  BackstoreRef,
  FileioBackstore,
  FileioBackstoreOptions,
  UioDevice,
  UserBackstore,
  UserBackstoreOptions,
  WaitOptions,
} from './model.js';
import type { OwnershipControl } from './ownership.js';
import { type Transaction, transaction } from './transaction.js';
import {
  validateBlockSize,
  validateDevConfig,
  validateInteger,
  validateObjectName,
  validateSerial,
  validateSize,
} from './validate.js';

/** `dev_config` subtype that marks TCMU backstores created by node-tcmu. */
export const OWN_SUBTYPE = 'tcmu-node';

const MAX_HBA = 2 ** 31 - 1;
const HBA_DIR = /^([a-z][a-z0-9_]*?)_(\d+)$/;

/** `core/<plugin>_<hba>/<name>`. */
export function relativeBackstore(ref: BackstoreRef): string {
  return `core/${ref.plugin}_${ref.hba}/${ref.name}`;
}

/** `core/<plugin>_<hba>/<name>` objects: creation, the files of one, HBA bookkeeping. */
export class Backstores {
  constructor(
    private readonly ctx: ConfigfsContext,
    private readonly ownership: OwnershipControl,
  ) {}

  path(ref: BackstoreRef): string {
    if (ref.plugin !== 'user' && ref.plugin !== 'fileio') {
      throw new InvalidOptionError('backstore.plugin', `unsupported plugin "${String(ref.plugin)}"`);
    }
    validateInteger('backstore.hba', ref.hba, 0, MAX_HBA);
    validateObjectName('backstore name', ref.name);
    return `${this.ctx.targetRoot}/${relativeBackstore(ref)}`;
  }

  /** Validates now (before any filesystem access); the returned creation runs under the lock. */
  prepareUser(options: UserBackstoreOptions): () => Promise<UserBackstore> {
    const name = validateObjectName('backstore name', options.name);
    const blockSize = validateBlockSize('blockSize', options.blockSize ?? 512);
    const size = validateSize('size', options.size, blockSize);
    const hba = options.hba === undefined ? undefined : validateInteger('hba', options.hba, 0, MAX_HBA);
    const devConfig = validateDevConfig(options.devConfig ?? `${OWN_SUBTYPE}/${name}`);
    const serial = options.serial === undefined ? randomUUID() : validateSerial(options.serial);
    const controlValues: Record<string, string | number> = {
      dev_config: devConfig,
      dev_size: size,
      hw_block_size: blockSize,
      nl_reply_supported: options.nlReplySupported ?? -1,
    };
    if (options.hwMaxSectors !== undefined) controlValues.hw_max_sectors = options.hwMaxSectors;
    if (options.maxDataAreaMb !== undefined) controlValues.max_data_area_mb = options.maxDataAreaMb;
    if (options.dataPagesPerBlk !== undefined) controlValues.data_pages_per_blk = options.dataPagesPerBlk;
    if (options.cmdRingSizeMb !== undefined) controlValues.cmd_ring_size_mb = options.cmdRingSizeMb;
    const control = renderControl('user', controlValues);
    const attributes = validateAttributes('user', options.attributes);

    return () =>
      transaction(`creating user backstore ${name}`, async (tx) => {
        const ref = await this.reserve(tx, 'user', name, hba, options.note);
        const path = this.path(ref);
        await this.ctx.write(`${path}/control`, control);
        // Before enable: no netlink RECONFIG, and the handler sees them at open.
        await this.writeAttributes(path, attributes);
        await this.ctx.write(`${path}/wwn/vpd_unit_serial`, serial);
        await this.ctx.write(`${path}/enable`, '1');
        return {
          kind: 'backstore',
          plugin: 'user',
          hba: ref.hba,
          name,
          path,
          devConfig,
          size,
          blockSize,
          serial,
        };
      });
  }

  /** Like prepareUser, for a fileio backstore. */
  prepareFileio(options: FileioBackstoreOptions): () => Promise<FileioBackstore> {
    const name = validateObjectName('backstore name', options.name);
    const blockSize = validateBlockSize('blockSize', options.blockSize ?? 512);
    const size = validateSize('size', options.size, blockSize);
    const hba = options.hba === undefined ? undefined : validateInteger('hba', options.hba, 0, MAX_HBA);
    const serial = options.serial === undefined ? randomUUID() : validateSerial(options.serial);
    const buffered = options.buffered ?? false;
    // fd_set_configfs_dev_params only accepts fd_buffered_io=1; O_DSYNC is the default.
    const control = renderControl('fileio', {
      fd_dev_name: options.file,
      fd_dev_size: size,
      ...(buffered ? { fd_buffered_io: 1 } : {}),
    });
    const attributes = validateAttributes('fileio', options.attributes);
    if (attributes.block_size !== undefined && attributes.block_size !== blockSize) {
      throw new InvalidOptionError('attributes.block_size', 'conflicts with blockSize');
    }

    return () =>
      transaction(`creating fileio backstore ${name}`, async (tx) => {
        const ref = await this.reserve(tx, 'fileio', name, hba);
        const path = this.path(ref);
        await this.ctx.write(`${path}/control`, control);
        await this.ctx.write(`${path}/wwn/vpd_unit_serial`, serial);
        await this.ctx.write(`${path}/enable`, '1');
        // After enable: target_configure_device() resets block_size to hw_block_size.
        if (blockSize !== 512) await this.ctx.write(`${path}/attrib/block_size`, String(blockSize));
        await this.writeAttributes(path, attributes);
        return {
          kind: 'backstore',
          plugin: 'fileio',
          hba: ref.hba,
          name,
          path,
          file: options.file,
          size,
          blockSize,
          buffered,
          serial,
        };
      });
  }

  async readInfo(ref: BackstoreRef) {
    const path = this.path(ref);
    if (!(await this.ctx.fs.exists(path)))
      throw new NotFoundError(`backstore ${ref.plugin}/${ref.name}`, path);
    return parseBackstoreInfo(await this.ctx.read(`${path}/info`));
  }

  async findUio(ref: BackstoreRef, options: WaitOptions): Promise<UioDevice> {
    if (ref.plugin !== 'user')
      throw new InvalidOptionError('backstore', 'only user (TCMU) backstores have a UIO device');
    const path = this.path(ref);
    const prefix = `tcm-user/${ref.hba}/${ref.name}`;
    const { fs, roots } = this.ctx;
    return this.ctx.poll(`the UIO device of ${prefix}`, options, async () => {
      if (!(await fs.exists(path))) throw new NotFoundError(`backstore user/${ref.name}`, path);
      const classDir = `${roots.sys}/class/uio`;
      const entries = await fs.readdir(classDir).catch(() => []);
      for (const entry of entries) {
        const match = /^uio(\d+)$/.exec(entry.name);
        if (!match) continue;
        const sysPath = `${classDir}/${entry.name}`;
        const name = (await fs.readFile(`${sysPath}/name`).catch(() => '')).trim();
        if (name !== prefix && !name.startsWith(`${prefix}/`)) continue;
        const mapSize = Number((await this.ctx.read(`${sysPath}/maps/map0/size`)).trim());
        const [major, minor] = parseDevNumbers(await this.ctx.read(`${sysPath}/dev`), `${sysPath}/dev`);
        return {
          index: Number(match[1]),
          name,
          devPath: `${roots.dev}/${entry.name}`,
          mapSize,
          major,
          minor,
          sysPath,
        };
      }
      return undefined;
    });
  }

  async writeAction(ref: BackstoreRef, action: 'block_dev' | 'reset_ring', value: number): Promise<void> {
    await this.ctx.write(`${this.path(ref)}/action/${action}`, String(value));
  }

  async blockAndResetRing(ref: BackstoreRef, level: 1 | 2): Promise<void> {
    await this.writeAction(ref, 'block_dev', 1);
    await this.writeAction(ref, 'reset_ring', level);
  }

  async writeAttribute(ref: BackstoreRef, name: string, value: number): Promise<void> {
    const attributes = validateAttributes(ref.plugin, { [name]: value });
    await this.writeAttributes(this.path(ref), attributes);
  }

  /** LUNs may only link an existing, enabled backstore. */
  async requireEnabled(ref: BackstoreRef, path: string): Promise<void> {
    if (!(await this.ctx.fs.exists(path)))
      throw new NotFoundError(`backstore ${ref.plugin}/${ref.name}`, path);
    const enabled = (await this.ctx.read(`${path}/enable`)).trim();
    if (enabled !== '1') {
      throw new ConfigfsError(
        'NOT_ENABLED',
        `backstore ${ref.plugin}/${ref.name} is not enabled (${path}/enable)`,
      );
    }
  }

  /** Every user and fileio backstore, sorted by plugin, HBA and name. */
  async refs(): Promise<BackstoreRef[]> {
    const refs: BackstoreRef[] = [];
    for (const entry of await this.ctx.fs.readdir(`${this.ctx.targetRoot}/core`).catch(() => [])) {
      const match = HBA_DIR.exec(entry.name);
      if (!match || entry.kind !== 'dir') continue;
      const plugin = match[1];
      if (plugin !== 'user' && plugin !== 'fileio') continue;
      for (const name of await this.ctx.listDirs(`${this.ctx.targetRoot}/core/${entry.name}`)) {
        refs.push({ plugin, hba: Number(match[2]), name });
      }
    }
    return refs.sort(
      (a, b) => a.plugin.localeCompare(b.plugin) || a.hba - b.hba || a.name.localeCompare(b.name),
    );
  }

  /** The user or fileio backstore a resolved LUN link points to. */
  async refOf(resolved: string | undefined): Promise<BackstoreRef | undefined> {
    if (!resolved) return undefined;
    const { fs, targetRoot } = this.ctx;
    const core = await fs.realpath(`${targetRoot}/core`).catch(() => `${targetRoot}/core`);
    if (!resolved.startsWith(`${core}/`)) return undefined;
    const [hbaDir, name] = resolved.slice(core.length + 1).split('/');
    const match = hbaDir ? HBA_DIR.exec(hbaDir) : null;
    if (!match || !name) return undefined;
    const plugin = match[1];
    if (plugin !== 'user' && plugin !== 'fileio') return undefined;
    return { plugin, hba: Number(match[2]), name };
  }

  /** An HBA dir holds only attribute files once its devices are gone; never leave it empty. */
  async removeHbaIfEmpty(ref: BackstoreRef): Promise<void> {
    const hbaPath = `${this.ctx.targetRoot}/core/${ref.plugin}_${ref.hba}`;
    let entries: DirEntry[];
    try {
      entries = await this.ctx.fs.readdir(hbaPath);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return;
      throw new KernelError('readdir', hbaPath, errnoOf(error), error);
    }
    if (entries.some((entry) => entry.kind === 'dir')) return;
    try {
      await this.ctx.fs.rmdir(hbaPath);
    } catch (error) {
      const code = errnoOf(error);
      // Someone created a device in it meanwhile: theirs now.
      if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EBUSY') return;
      throw new KernelError('rmdir', hbaPath, code, error);
    }
  }

  private async reserve(
    tx: Transaction,
    plugin: BackstorePlugin,
    name: string,
    hba: number | undefined,
    note?: Readonly<Record<string, string>>,
  ): Promise<BackstoreRef> {
    // saveconfig addresses backstores as /backstores/<plugin>/<name>: keep names unique per plugin.
    for (const existing of await this.refs()) {
      if (existing.plugin === plugin && existing.name === name) {
        throw new AlreadyExistsError(`${plugin} backstore ${name}`, this.path(existing));
      }
    }
    const ref: BackstoreRef = { plugin, hba: hba ?? (await this.lowestFreeHba()), name };
    await this.ownership.claim(tx, relativeBackstore(ref), note);
    const hbaPath = `${this.ctx.targetRoot}/core/${plugin}_${ref.hba}`;
    if (!(await this.ctx.fs.exists(hbaPath))) {
      try {
        await this.ctx.fs.mkdir(hbaPath);
        tx.add(`remove ${hbaPath} if empty`, () => this.removeHbaIfEmpty(ref));
      } catch (error) {
        // Another process may have created it in between: sharing an HBA is fine.
        if (errnoOf(error) !== 'EEXIST') throw new KernelError('mkdir', hbaPath, errnoOf(error), error);
      }
    }
    await this.ctx.mkdir(tx, `${hbaPath}/${name}`);
    return ref;
  }

  private async lowestFreeHba(): Promise<number> {
    const used = new Set<number>();
    for (const entry of await this.ctx.fs.readdir(`${this.ctx.targetRoot}/core`).catch(() => [])) {
      const match = HBA_DIR.exec(entry.name);
      if (match && entry.kind === 'dir') used.add(Number(match[2]));
    }
    let index = 0;
    while (used.has(index)) index++;
    return index;
  }

  private async writeAttributes(path: string, attributes: Attributes): Promise<void> {
    for (const [name, value] of Object.entries(attributes)) {
      await this.ctx.write(`${path}/attrib/${name}`, String(value));
    }
  }
}
