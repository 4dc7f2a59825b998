import { randomBytes } from 'node:crypto';
import type { Backstores } from './backstores.js';
import type { ConfigfsContext } from './context.js';
import { AlreadyExistsError, InvalidOptionError, NotFoundError } from './errors.js';
import type {
  ChapCredentials,
  InitiatorAclOptions,
  IscsiExportOptions,
  IscsiLun,
  IscsiLunOptions,
  IscsiTarget,
  IscsiTargetLun,
  MappedLunOptions,
} from './model.js';
import type { OwnershipControl } from './ownership.js';
import { transaction } from './transaction.js';
import {
  MAX_ISCSI_TPGT,
  MAX_LUN,
  portalDirName,
  validateChapCredentials,
  validateInteger,
  validateIqn,
  validateObjectName,
  validatePortal,
} from './validate.js';

export function randomIqn(): string {
  return `iqn.2003-01.org.linux-iscsi.tcmu-node:sn.${randomBytes(6).toString('hex')}`;
}

/** `iscsi/<iqn>/tpgt_<n>`: portals, LUNs, demo mode or ACLs with CHAP (removal is in fabrics.ts). */
export class Iscsi {
  constructor(
    private readonly ctx: ConfigfsContext,
    private readonly ownership: OwnershipControl,
    private readonly backstores: Backstores,
  ) {}

  /** Validates now (before any filesystem access); the returned creation runs under the lock. */
  prepareExport(options: IscsiExportOptions): () => Promise<IscsiTarget> {
    const iqn = options.iqn === undefined ? randomIqn() : validateIqn('target IQN', options.iqn);
    const tpgt = validateInteger('tpgt', options.tpgt ?? 1, 1, MAX_ISCSI_TPGT);
    if (!Array.isArray(options.portals) || options.portals.length === 0) {
      throw new InvalidOptionError('portals', 'at least one portal is required');
    }
    const portals = options.portals.map((portal) => validatePortal(portal));
    if (new Set(portals.map(portalDirName)).size !== portals.length) {
      throw new InvalidOptionError('portals', 'duplicate portal');
    }
    if (!Array.isArray(options.luns) || options.luns.length === 0) {
      throw new InvalidOptionError('luns', 'at least one LUN is required');
    }
    const luns: IscsiLun[] = options.luns.map((entry, i) => ({
      lun: validateInteger(`luns[${i}].lun`, entry.lun ?? i, 0, MAX_LUN),
      alias: validateObjectName(`luns[${i}].alias`, entry.alias ?? entry.backstore.name),
      backstore: { plugin: entry.backstore.plugin, hba: entry.backstore.hba, name: entry.backstore.name },
    }));
    if (new Set(luns.map((l) => l.lun)).size !== luns.length)
      throw new InvalidOptionError('luns', 'duplicate LUN number');
    const access = options.access ?? { mode: 'demo' };
    if (access.mode !== 'demo' && access.mode !== 'acl') {
      throw new InvalidOptionError('access.mode', 'must be "demo" or "acl"');
    }
    if (access.mode === 'acl' && !Array.isArray(access.initiators)) {
      throw new InvalidOptionError('access.initiators', 'must list the initiators allowed in "acl" mode');
    }
    const initiators =
      access.mode === 'acl' ? access.initiators.map((acl, i) => validateAcl(acl, i, luns)) : [];
    const ctx = this.ctx;

    return () =>
      transaction(`exporting iSCSI target ${iqn}`, async (tx) => {
        for (const lun of luns)
          await this.backstores.requireEnabled(lun.backstore, this.backstores.path(lun.backstore));
        const targetRel = `iscsi/${iqn}`;
        const targetPath = `${ctx.targetRoot}/${targetRel}`;
        if (await ctx.fs.exists(targetPath)) throw new AlreadyExistsError(`iSCSI target ${iqn}`, targetPath);
        const tpgPath = `${targetPath}/tpgt_${tpgt}`;
        await this.ownership.claim(tx, targetRel);
        await ctx.ensureDir(`${ctx.targetRoot}/iscsi`);
        await ctx.mkdir(tx, targetPath);
        await ctx.mkdir(tx, tpgPath);
        for (const lun of luns) {
          const lunPath = `${tpgPath}/lun/lun_${lun.lun}`;
          await ctx.mkdir(tx, lunPath);
          await ctx.link(tx, this.backstores.path(lun.backstore), `${lunPath}/${lun.alias}`);
        }
        for (const portal of portals) await ctx.mkdir(tx, `${tpgPath}/np/${portalDirName(portal)}`);
        if (access.mode === 'demo') {
          await ctx.write(`${tpgPath}/attrib/authentication`, '0');
          await ctx.write(`${tpgPath}/attrib/generate_node_acls`, '1');
          await ctx.write(`${tpgPath}/attrib/cache_dynamic_acls`, '1');
          await ctx.write(`${tpgPath}/attrib/demo_mode_write_protect`, access.writeProtect ? '1' : '0');
        } else {
          const chap = initiators.some((acl) => acl.chap !== undefined);
          await ctx.write(`${tpgPath}/attrib/generate_node_acls`, '0');
          await ctx.write(`${tpgPath}/attrib/authentication`, chap ? '1' : '0');
          for (const acl of initiators) {
            const aclPath = `${tpgPath}/acls/${acl.iqn}`;
            await ctx.mkdir(tx, aclPath);
            if (acl.chap) {
              await ctx.write(`${aclPath}/auth/userid`, acl.chap.userid);
              await ctx.write(`${aclPath}/auth/password`, acl.chap.password);
              if (acl.chap.mutualUserid !== undefined && acl.chap.mutualPassword !== undefined) {
                await ctx.write(`${aclPath}/auth/userid_mutual`, acl.chap.mutualUserid);
                await ctx.write(`${aclPath}/auth/password_mutual`, acl.chap.mutualPassword);
              }
            }
            for (const mapped of acl.mappedLuns) {
              const mappedPath = `${aclPath}/lun_${mapped.mappedLun}`;
              await ctx.mkdir(tx, mappedPath);
              await ctx.link(
                tx,
                `${tpgPath}/lun/lun_${mapped.tpgLun}`,
                `${mappedPath}/tpg_lun_${mapped.tpgLun}`,
              );
              if (mapped.writeProtect) await ctx.write(`${mappedPath}/write_protect`, '1');
            }
          }
        }
        if (options.enable ?? true) {
          await ctx.write(`${tpgPath}/enable`, '1');
          tx.add(`disable ${tpgPath}`, () => ctx.write(`${tpgPath}/enable`, '0'));
        }
        return { kind: 'iscsi-target', iqn, tpgt, path: targetPath, tpgPath, portals, luns };
      });
  }

  /**
   * One more LUN on an iSCSI target of this process (several devices behind one target), mapped
   * at its own number for every initiator ACL the TPG has, as exportIscsi maps its LUNs.
   * Validates now; the returned step runs under the lock.
   */
  prepareAddLun(options: IscsiLunOptions): () => Promise<IscsiTargetLun> {
    const iqn = validateIqn('target IQN', options.iqn);
    const tpgt = validateInteger('tpgt', options.tpgt ?? 1, 1, MAX_ISCSI_TPGT);
    const lun = validateInteger('lun', options.lun, 0, MAX_LUN);
    const alias = validateObjectName('LUN alias', options.alias ?? options.backstore.name);
    const { ctx, ownership, backstores } = this;
    return () =>
      transaction(`adding LUN ${lun} to iSCSI target ${iqn}`, async (tx) => {
        const backstorePath = backstores.path(options.backstore);
        await backstores.requireEnabled(options.backstore, backstorePath);
        const targetRel = `iscsi/${iqn}`;
        const tpgPath = `${ctx.targetRoot}/${targetRel}/tpgt_${tpgt}`;
        if (!(await ctx.fs.exists(tpgPath)))
          throw new NotFoundError(`iSCSI target ${iqn} TPG ${tpgt}`, tpgPath);
        await ownership.requireOwnTarget(targetRel);
        const lunPath = `${tpgPath}/lun/lun_${lun}`;
        if (await ctx.fs.exists(lunPath)) throw new AlreadyExistsError(`LUN ${lun}`, lunPath);
        const acls = await ctx.listDirs(`${tpgPath}/acls`);
        for (const acl of acls) {
          const mappedPath = `${tpgPath}/acls/${acl}/lun_${lun}`;
          if (await ctx.fs.exists(mappedPath))
            throw new AlreadyExistsError(`mapped LUN ${lun} of ${acl}`, mappedPath);
        }
        await ctx.mkdir(tx, lunPath);
        await ctx.link(tx, backstorePath, `${lunPath}/${alias}`);
        for (const acl of acls) {
          const mappedPath = `${tpgPath}/acls/${acl}/lun_${lun}`;
          await ctx.mkdir(tx, mappedPath);
          await ctx.link(tx, lunPath, `${mappedPath}/tpg_lun_${lun}`);
        }
        return { kind: 'iscsi-lun', iqn, tpgt, lun, tpgPath, path: lunPath };
      });
  }
}

interface ValidatedAcl {
  readonly iqn: string;
  readonly chap: ChapCredentials | undefined;
  readonly mappedLuns: ReadonlyArray<{ mappedLun: number; tpgLun: number; writeProtect: boolean }>;
}

function validateAcl(acl: InitiatorAclOptions, i: number, luns: readonly IscsiLun[]): ValidatedAcl {
  const iqn = validateIqn(`access.initiators[${i}].iqn`, acl.iqn);
  const chap = acl.chap ? validateChapCredentials(`access.initiators[${i}].chap`, acl.chap) : undefined;
  const tpgLuns = new Set(luns.map((lun) => lun.lun));
  const defaults: MappedLunOptions[] = luns.map((lun) => ({ mappedLun: lun.lun, tpgLun: lun.lun }));
  const mappedLuns = (acl.mappedLuns ?? defaults).map((mapped, j) => {
    const where = `access.initiators[${i}].mappedLuns[${j}]`;
    const tpgLun = validateInteger(`${where}.tpgLun`, mapped.tpgLun, 0, MAX_LUN);
    if (!tpgLuns.has(tpgLun))
      throw new InvalidOptionError(`${where}.tpgLun`, `LUN ${tpgLun} is not exported`);
    return {
      mappedLun: validateInteger(`${where}.mappedLun`, mapped.mappedLun, 0, MAX_LUN),
      tpgLun,
      writeProtect: mapped.writeProtect ?? false,
    };
  });
  if (new Set(mappedLuns.map((m) => m.mappedLun)).size !== mappedLuns.length) {
    throw new InvalidOptionError(`access.initiators[${i}].mappedLuns`, 'duplicate mapped LUN number');
  }
  return { iqn, chap, mappedLuns };
}
