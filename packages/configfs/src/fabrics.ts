import { randomBytes } from 'node:crypto';
import type { Backstores } from './backstores.js';
import { type ConfigfsContext, parseDevNumbers } from './context.js';
import {
  AlreadyExistsError,
  ConfigfsError,
  errnoOf,
  InvalidOptionError,
  KernelError,
  NotFoundError,
} from './errors.js';
import type { DirEntry } from './host-fs.js';
import type { Disk, IscsiTargetLun, LoopbackLun, LoopbackLunOptions, WaitOptions } from './model.js';
import type { OwnershipControl } from './ownership.js';
import { transaction } from './transaction.js';
import {
  MAX_LOOPBACK_TPGT,
  MAX_LUN,
  validateInteger,
  validateNaaWwn,
  validateObjectName,
} from './validate.js';

export const LUN_DIR = /^lun_(\d+)$/;
const TPG_DIR = /^tpgt_(\d+)$/;
/** Directories the kernel creates inside a fabric dir that are not targets. */
const FABRIC_DEFAULT_GROUPS = new Set(['discovery_auth']);

/** rtslib's scheme: the LIO OUI prefix 5001405 plus 9 random hex digits. */
export function randomNaa(): string {
  return `naa.5001405${randomBytes(5).toString('hex').slice(0, 9)}`;
}

/** The initiator side of a loopback nexus: same NAA, last digit changed so it differs. */
function nexusFor(wwn: string): string {
  const last = wwn.at(-1)!;
  return `${wwn.slice(0, -1)}${last === 'f' ? 'e' : 'f'}`;
}

/**
 * `<fabric>/<wwn>/tpgt_<n>` trees: loopback LUNs and their disks, the listing and the
 * removal of targets and LUN links of any fabric (iSCSI creation is in iscsi.ts).
 */
export class Fabrics {
  constructor(
    private readonly ctx: ConfigfsContext,
    private readonly ownership: OwnershipControl,
    private readonly backstores: Backstores,
  ) {}

  /** Validates now (before any filesystem access); the returned creation runs under the lock. */
  prepareLoopbackLun(options: LoopbackLunOptions): () => Promise<LoopbackLun> {
    const backstorePath = this.backstores.path(options.backstore);
    const wwn = options.wwn === undefined ? randomNaa() : validateNaaWwn('target WWN', options.wwn);
    const tpgt = validateInteger('tpgt', options.tpgt ?? 1, 1, MAX_LOOPBACK_TPGT);
    const lun = validateInteger('lun', options.lun ?? 0, 0, MAX_LUN);
    const alias = validateObjectName('LUN alias', options.alias ?? options.backstore.name);
    const nexusWanted = options.nexus === undefined ? undefined : validateNaaWwn('nexus WWN', options.nexus);
    const { fs, targetRoot } = this.ctx;

    return () =>
      transaction(`creating loopback LUN ${wwn}/tpgt_${tpgt}/lun_${lun}`, async (tx) => {
        await this.backstores.requireEnabled(options.backstore, backstorePath);
        const targetRel = `loopback/${wwn}`;
        const targetPath = `${targetRoot}/${targetRel}`;
        const tpgPath = `${targetPath}/tpgt_${tpgt}`;
        const lunPath = `${tpgPath}/lun/lun_${lun}`;
        if (await fs.exists(targetPath)) {
          await this.ownership.requireOwnTarget(targetRel);
        } else {
          await this.ownership.claim(tx, targetRel);
          await this.ctx.ensureDir(`${targetRoot}/loopback`);
          await this.ctx.mkdir(tx, targetPath);
        }
        let nexus: string;
        if (await fs.exists(tpgPath)) {
          nexus = await this.readNexus(tpgPath);
          if (!nexus) throw new NotFoundError(`I_T nexus of ${targetRel}/tpgt_${tpgt}`, `${tpgPath}/nexus`);
        } else {
          await this.ctx.mkdir(tx, tpgPath);
          nexus = nexusWanted ?? nexusFor(wwn);
          await this.ctx.write(`${tpgPath}/nexus`, nexus);
          tx.add(`drop nexus of ${tpgPath}`, () => this.dropNexus(tpgPath));
        }
        if (await fs.exists(lunPath)) throw new AlreadyExistsError(`LUN ${lun}`, lunPath);
        await this.ctx.mkdir(tx, lunPath);
        await this.ctx.link(tx, backstorePath, `${lunPath}/${alias}`);
        return {
          kind: 'loopback-lun',
          wwn,
          tpgt,
          lun,
          alias,
          nexus,
          backstore: {
            plugin: options.backstore.plugin,
            hba: options.backstore.hba,
            name: options.backstore.name,
          },
          tpgPath,
          path: lunPath,
        };
      });
  }

  async waitForDisk(lun: LoopbackLun, options: WaitOptions): Promise<Disk> {
    const { fs, roots } = this.ctx;
    return this.ctx.poll(`the disk of ${lun.wwn} LUN ${lun.lun}`, options, async () => {
      if (!(await fs.exists(lun.path))) throw new NotFoundError(`loopback LUN ${lun.lun}`, lun.path);
      const address = (await this.ctx.read(`${lun.tpgPath}/address`)).trim();
      if (!/^\d+:\d+:\d+$/.test(address)) {
        throw new ConfigfsError(
          'BAD_ADDRESS',
          `unexpected TPG address "${address}" in ${lun.tpgPath}/address`,
        );
      }
      const hctl = `${address}:${lun.lun}`;
      const blockDir = `${roots.sys}/bus/scsi/devices/${hctl}/block`;
      const entries = await fs.readdir(blockDir).catch(() => []);
      const name = entries[0]?.name;
      if (!name) return undefined;
      const devFile = await fs.readFile(`${blockDir}/${name}/dev`).catch(() => undefined);
      if (devFile === undefined) return undefined;
      const [major, minor] = parseDevNumbers(devFile, `${blockDir}/${name}/dev`);
      const devPath = `${roots.dev}/${name}`;
      if (!(await fs.exists(devPath))) return undefined;
      const sectors = Number((await this.ctx.read(`${blockDir}/${name}/size`)).trim());
      return { name, devPath, major, minor, hctl, sizeBytes: sectors * 512 };
    });
  }

  /** Caller holds the lock. */
  async removeLun(lun: LoopbackLun): Promise<void> {
    await this.removeLunDir(lun.path);
    await this.removeTargetWithoutLuns('loopback', lun.wwn, lun.tpgPath);
  }

  /** After a LUN went: its target too when no LUN is left and it is ours (or its owner is dead). */
  private async removeTargetWithoutLuns(fabric: string, wwn: string, tpgPath: string): Promise<void> {
    const targetRel = `${fabric}/${wwn}`;
    if (!(await this.ctx.fs.exists(`${this.ctx.targetRoot}/${targetRel}`))) {
      await this.ownership.dropMarker(targetRel);
      return;
    }
    // LUN dirs without a link are leftovers of a crash, not LUNs in use.
    for (const lunDir of await this.listLunDirs(tpgPath)) {
      if ((await this.describeLun(`${tpgPath}/lun/${lunDir}`)).alias !== undefined) return;
    }
    if (await this.ownership.mayRemoveTarget(await this.ownership.owners.read(targetRel))) {
      await this.removeTarget(fabric, wwn);
    }
  }

  /**
   * Caller holds the lock. One iSCSI LUN: the ACLs' mapped LUNs that point at it, then the
   * LUN; the target goes with its last LUN when it is ours (or its owner is dead).
   */
  async removeIscsiLun(lun: IscsiTargetLun): Promise<void> {
    const { ctx } = this;
    if (await ctx.fs.exists(lun.path)) {
      const resolved = await ctx.fs.realpath(lun.path).catch(() => lun.path);
      for (const acl of await ctx.listDirs(`${lun.tpgPath}/acls`)) {
        const aclPath = `${lun.tpgPath}/acls/${acl}`;
        for (const mapped of await ctx.listDirs(aclPath)) {
          if (!LUN_DIR.test(mapped)) continue;
          const { resolved: to } = await this.describeLun(`${aclPath}/${mapped}`);
          if (to === resolved) await this.removeLunDir(`${aclPath}/${mapped}`);
        }
      }
      await this.removeLunDir(lun.path);
    }
    await this.removeTargetWithoutLuns('iscsi', lun.iqn, lun.tpgPath);
  }

  /** Caller holds the lock. */
  async removeTarget(fabric: string, wwn: string): Promise<void> {
    if (!/^[a-z0-9_]+$/.test(fabric))
      throw new InvalidOptionError('fabric', `"${fabric}" is not a fabric name`);
    if (wwn.includes('/') || wwn === '.' || wwn === '..' || wwn === '') {
      throw new InvalidOptionError('wwn', `"${wwn}" is not a target name`);
    }
    const targetRel = `${fabric}/${wwn}`;
    const targetPath = `${this.ctx.targetRoot}/${targetRel}`;
    if (await this.ctx.fs.exists(targetPath)) {
      for (const tag of await this.listTpgTags(targetPath)) {
        const tpgPath = `${targetPath}/tpgt_${tag}`;
        if (await this.ctx.fs.exists(`${tpgPath}/enable`)) {
          await this.ctx.fs.writeFile(`${tpgPath}/enable`, '0').catch(() => undefined);
        }
        // ACLs first: their mapped LUNs link to the TPG's LUNs (rtslib's order).
        for (const acl of await this.ctx.listDirs(`${tpgPath}/acls`)) {
          const aclPath = `${tpgPath}/acls/${acl}`;
          for (const mapped of await this.ctx.listDirs(aclPath)) {
            if (LUN_DIR.test(mapped)) await this.removeLunDir(`${aclPath}/${mapped}`);
          }
          await this.ctx.rmdirIfPresent(aclPath);
        }
        for (const lunDir of await this.listLunDirs(tpgPath))
          await this.removeLunDir(`${tpgPath}/lun/${lunDir}`);
        for (const portal of await this.ctx.listDirs(`${tpgPath}/np`))
          await this.ctx.rmdirIfPresent(`${tpgPath}/np/${portal}`);
        if (fabric === 'loopback') await this.dropNexus(tpgPath);
        await this.ctx.rmdirIfPresent(tpgPath);
      }
      await this.ctx.rmdirIfPresent(targetPath);
    }
    await this.ownership.dropMarker(targetRel);
  }

  /** Unlinks every symlink in a LUN (or mapped LUN) dir, then removes the dir. */
  async removeLunDir(lunPath: string): Promise<void> {
    let entries: DirEntry[];
    try {
      entries = await this.ctx.fs.readdir(lunPath);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return;
      throw new KernelError('readdir', lunPath, errnoOf(error), error);
    }
    for (const entry of entries) {
      if (entry.kind !== 'symlink') continue;
      try {
        await this.ctx.fs.unlink(`${lunPath}/${entry.name}`);
      } catch (error) {
        if (errnoOf(error) !== 'ENOENT')
          throw new KernelError('unlink', `${lunPath}/${entry.name}`, errnoOf(error), error);
      }
    }
    await this.ctx.rmdirIfPresent(lunPath);
  }

  /** The fabric dirs present (`loopback`, `iscsi`, …). */
  async listFabrics(): Promise<string[]> {
    const entries = await this.ctx.fs.readdir(this.ctx.targetRoot).catch(() => []);
    return entries
      .filter((entry) => entry.kind === 'dir' && entry.name !== 'core')
      .map((entry) => entry.name)
      .sort();
  }

  async listTargetNames(fabric: string): Promise<string[]> {
    const names = await this.ctx.listDirs(`${this.ctx.targetRoot}/${fabric}`);
    return names.filter((name) => !FABRIC_DEFAULT_GROUPS.has(name));
  }

  async listTpgTags(targetPath: string): Promise<number[]> {
    const tags: number[] = [];
    for (const name of await this.ctx.listDirs(targetPath)) {
      const match = TPG_DIR.exec(name);
      if (match) tags.push(Number(match[1]));
    }
    return tags.sort((a, b) => a - b);
  }

  async listLunDirs(tpgPath: string): Promise<string[]> {
    const names = await this.ctx.listDirs(`${tpgPath}/lun`);
    return names.filter((name) => LUN_DIR.test(name)).sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
  }

  /** The link of a LUN dir: its name (the alias) and where it resolves. */
  async describeLun(lunPath: string): Promise<{ alias?: string; resolved?: string }> {
    const entries = await this.ctx.fs.readdir(lunPath).catch(() => []);
    const link = entries.find((entry) => entry.kind === 'symlink');
    if (!link) return {};
    const resolved = await this.ctx.fs.realpath(`${lunPath}/${link.name}`).catch(() => undefined);
    return resolved === undefined ? { alias: link.name } : { alias: link.name, resolved };
  }

  private async dropNexus(tpgPath: string): Promise<void> {
    try {
      await this.ctx.fs.writeFile(`${tpgPath}/nexus`, 'NULL');
    } catch (error) {
      const code = errnoOf(error);
      // ENODEV: no nexus (tcm_loop_drop_nexus); ENOENT: TPG already gone.
      if (code === 'ENODEV' || code === 'ENOENT') return;
      throw new KernelError('write NULL to', `${tpgPath}/nexus`, code, error);
    }
  }

  private async readNexus(tpgPath: string): Promise<string> {
    try {
      return (await this.ctx.fs.readFile(`${tpgPath}/nexus`)).trim();
    } catch (error) {
      if (errnoOf(error) === 'ENODEV') return '';
      throw new KernelError('read', `${tpgPath}/nexus`, errnoOf(error), error);
    }
  }
}
