import { randomBytes, randomUUID } from 'node:crypto';
import {
  type Attributes,
  type BackstorePlugin,
  parseBackstoreInfo,
  renderControl,
  validateAttributes,
  WRITABLE_ATTRIBUTES,
} from './control.js';
import {
  AlreadyExistsError,
  ConfigfsError,
  errnoOf,
  InUseError,
  InvalidOptionError,
  KernelError,
  NotFoundError,
  RollbackError,
  TimeoutError,
} from './errors.js';
import { type HostFs, NodeHostFs, type Roots, resolveRoots } from './host-fs.js';
import type {
  AclEntry,
  Backstore,
  BackstoreEntry,
  BackstoreRef,
  CleanupReport,
  Disk,
  FileioBackstore,
  FileioBackstoreOptions,
  FoundUserBackstore,
  Handle,
  InitiatorAclOptions,
  Inventory,
  IscsiExportOptions,
  IscsiLun,
  IscsiTarget,
  LoopbackLun,
  LoopbackLunOptions,
  LunEntry,
  MappedLunEntry,
  MappedLunOptions,
  TargetEntry,
  TpgEntry,
  UioDevice,
  UserBackstore,
  UserBackstoreOptions,
  WaitOptions,
} from './model.js';
import { type ConfigfsLock, SocketLock } from './lock.js';
import { type OwnerRecord, OwnerRegistry } from './owner.js';
import { exportConfig, importConfig, type SaveConfig } from './saveconfig.js';
import {
  MAX_ISCSI_TPGT,
  MAX_LOOPBACK_TPGT,
  MAX_LUN,
  type Portal,
  portalDirName,
  validateBlockSize,
  validateChapField,
  validateDevConfig,
  validateInteger,
  validateIqn,
  validateNaaWwn,
  validateObjectName,
  validatePortal,
  validateSerial,
  validateSize,
} from './validate.js';

/** `dev_config` subtype that marks TCMU backstores created by node-tcmu. */
export const OWN_SUBTYPE = 'tcmu-node';

const MAX_HBA = 2 ** 31 - 1;
const HBA_DIR = /^([a-z][a-z0-9_]*?)_(\d+)$/;
const TPG_DIR = /^tpgt_(\d+)$/;
const LUN_DIR = /^lun_(\d+)$/;
/** Directories the kernel creates inside a fabric dir that are not targets. */
const FABRIC_DEFAULT_GROUPS = new Set(['discovery_auth']);

export interface TargetManagerOptions {
  /** Filesystem implementation; default: the real one (node:fs/promises). */
  readonly fs?: HostFs;
  /** Where configfs, sysfs, /dev, /proc and our run dir live. */
  readonly roots?: Partial<Roots>;
  /** Owner recorded in ownership markers; default `process.pid`. */
  readonly ownerPid?: number;
  /**
   * Held around every creation and removal, across processes; default: a SocketLock
   * named after the configfs root.
   */
  readonly lock?: ConfigfsLock;
}

interface UndoStep {
  readonly describe: string;
  readonly run: () => Promise<unknown>;
}

/** Undo log of one multi-step creation: replayed in reverse when a step fails. */
class Transaction {
  private readonly steps: UndoStep[] = [];

  add(describe: string, run: () => Promise<unknown>): void {
    this.steps.push({ describe, run });
  }

  async rollback(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const step of this.steps.reverse()) {
      try {
        await step.run();
      } catch (error) {
        errors.push(
          new ConfigfsError('ROLLBACK_STEP', `rollback: ${step.describe} failed`, { cause: error }),
        );
      }
    }
    return errors;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Creates, finds and removes LIO objects through configfs: TCMU (`user`) and
 * fileio backstores, tcm_loop LUNs and iSCSI targets. Every creation is
 * transactional (rolled back on failure); every removal is idempotent.
 */
export class TargetManager {
  readonly fs: HostFs;
  readonly roots: Roots;
  readonly owners: OwnerRegistry;
  /** `<configfs>/target`. */
  readonly targetRoot: string;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly lock: ConfigfsLock;

  constructor(options: TargetManagerOptions = {}) {
    this.fs = options.fs ?? new NodeHostFs();
    this.roots = resolveRoots(options.roots);
    this.targetRoot = `${this.roots.configfs}/target`;
    this.owners = new OwnerRegistry(this.fs, this.roots, options.ownerPid ?? process.pid);
    this.lock = options.lock ?? new SocketLock(this.roots.configfs);
  }

  // ---------------------------------------------------------------- backstores

  async createUserBackstore(options: UserBackstoreOptions): Promise<UserBackstore> {
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

    return this.serialized(() =>
      this.transaction(`creating user backstore ${name}`, async (tx) => {
        const ref = await this.reserveBackstore(tx, 'user', name, hba, options.note);
        const path = this.backstorePath(ref);
        await this.write(`${path}/control`, control);
        // Before enable: no netlink RECONFIG, and the handler sees them at open.
        await this.writeAttributes(path, attributes);
        await this.write(`${path}/wwn/vpd_unit_serial`, serial);
        await this.write(`${path}/enable`, '1');
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
      }),
    );
  }

  async createFileioBackstore(options: FileioBackstoreOptions): Promise<FileioBackstore> {
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

    return this.serialized(() =>
      this.transaction(`creating fileio backstore ${name}`, async (tx) => {
        const ref = await this.reserveBackstore(tx, 'fileio', name, hba);
        const path = this.backstorePath(ref);
        await this.write(`${path}/control`, control);
        await this.write(`${path}/wwn/vpd_unit_serial`, serial);
        await this.write(`${path}/enable`, '1');
        // After enable: target_configure_device() resets block_size to hw_block_size.
        if (blockSize !== 512) await this.write(`${path}/attrib/block_size`, String(blockSize));
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
      }),
    );
  }

  /**
   * Removes a backstore and then its HBA directory if that is left empty.
   * LUNs that still link to it make this fail with InUseError unless `force`,
   * which removes those LUNs first (and targets of ours left without LUNs).
   */
  async removeBackstore(ref: BackstoreRef, options: { force?: boolean } = {}): Promise<void> {
    await this.serialized(() => this.removeBackstoreUnlocked(ref, options.force ?? false));
  }

  /** Parsed `info` of a backstore. */
  async readBackstoreInfo(ref: BackstoreRef) {
    const path = this.backstorePath(ref);
    if (!(await this.fs.exists(path))) throw new NotFoundError(`backstore ${ref.plugin}/${ref.name}`, path);
    return parseBackstoreInfo(await this.read(`${path}/info`));
  }

  /** Finds the UIO device of an enabled TCMU backstore, waiting for it to appear. */
  async findUio(ref: BackstoreRef, options: WaitOptions = {}): Promise<UioDevice> {
    if (ref.plugin !== 'user')
      throw new InvalidOptionError('backstore', 'only user (TCMU) backstores have a UIO device');
    const path = this.backstorePath(ref);
    const prefix = `tcm-user/${ref.hba}/${ref.name}`;
    return this.poll(`the UIO device of ${prefix}`, options, async () => {
      if (!(await this.fs.exists(path))) throw new NotFoundError(`backstore user/${ref.name}`, path);
      const classDir = `${this.roots.sys}/class/uio`;
      const entries = await this.fs.readdir(classDir).catch(() => []);
      for (const entry of entries) {
        const match = /^uio(\d+)$/.exec(entry.name);
        if (!match) continue;
        const sysPath = `${classDir}/${entry.name}`;
        const name = (await this.fs.readFile(`${sysPath}/name`).catch(() => '')).trim();
        if (name !== prefix && !name.startsWith(`${prefix}/`)) continue;
        const mapSize = Number((await this.read(`${sysPath}/maps/map0/size`)).trim());
        const [major, minor] = parseDevNumbers(await this.read(`${sysPath}/dev`), `${sysPath}/dev`);
        return {
          index: Number(match[1]),
          name,
          devPath: `${this.roots.dev}/${entry.name}`,
          mapSize,
          major,
          minor,
          sysPath,
        };
      }
      return undefined;
    });
  }

  // ---------------------------------------------------------------- loopback

  /**
   * Exports a backstore as a local SCSI disk through tcm_loop. Creates the target
   * and TPG if needed and writes the I_T nexus BEFORE the LUN: linking a LUN
   * without a nexus makes the SCSI scan fail (`TCM_Loop I_T Nexus does not exist`).
   */
  async createLoopbackLun(options: LoopbackLunOptions): Promise<LoopbackLun> {
    const backstorePath = this.backstorePath(options.backstore);
    const wwn = options.wwn === undefined ? randomNaa() : validateNaaWwn('target WWN', options.wwn);
    const tpgt = validateInteger('tpgt', options.tpgt ?? 1, 1, MAX_LOOPBACK_TPGT);
    const lun = validateInteger('lun', options.lun ?? 0, 0, MAX_LUN);
    const alias = validateObjectName('LUN alias', options.alias ?? options.backstore.name);
    const nexusWanted = options.nexus === undefined ? undefined : validateNaaWwn('nexus WWN', options.nexus);

    return this.serialized(() =>
      this.transaction(`creating loopback LUN ${wwn}/tpgt_${tpgt}/lun_${lun}`, async (tx) => {
        await this.requireEnabledBackstore(options.backstore, backstorePath);
        const targetRel = `loopback/${wwn}`;
        const targetPath = `${this.targetRoot}/${targetRel}`;
        const tpgPath = `${targetPath}/tpgt_${tpgt}`;
        const lunPath = `${tpgPath}/lun/lun_${lun}`;
        if (await this.fs.exists(targetPath)) {
          await this.requireOwnTarget(targetRel);
        } else {
          await this.owners.claim(targetRel);
          tx.add(`release marker of ${targetRel}`, () => this.owners.release(targetRel));
          await this.ensureDir(`${this.targetRoot}/loopback`);
          await this.mkdir(tx, targetPath);
        }
        let nexus: string;
        if (await this.fs.exists(tpgPath)) {
          nexus = await this.readNexus(tpgPath);
          if (!nexus) throw new NotFoundError(`I_T nexus of ${targetRel}/tpgt_${tpgt}`, `${tpgPath}/nexus`);
        } else {
          await this.mkdir(tx, tpgPath);
          nexus = nexusWanted ?? nexusFor(wwn);
          await this.write(`${tpgPath}/nexus`, nexus);
          tx.add(`drop nexus of ${tpgPath}`, () => this.dropNexus(tpgPath));
        }
        if (await this.fs.exists(lunPath)) throw new AlreadyExistsError(`LUN ${lun}`, lunPath);
        await this.mkdir(tx, lunPath);
        await this.link(tx, backstorePath, `${lunPath}/${alias}`);
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
      }),
    );
  }

  /**
   * Waits for the SCSI disk of a loopback LUN: `<tpg>/address` gives
   * `<host>:0:<tpgt>`, the disk is `/sys/bus/scsi/devices/<host>:0:<tpgt>:<lun>/block/*`.
   */
  async waitForDisk(lun: LoopbackLun, options: WaitOptions = {}): Promise<Disk> {
    return this.poll(`the disk of ${lun.wwn} LUN ${lun.lun}`, options, async () => {
      if (!(await this.fs.exists(lun.path))) throw new NotFoundError(`loopback LUN ${lun.lun}`, lun.path);
      const address = (await this.read(`${lun.tpgPath}/address`)).trim();
      if (!/^\d+:\d+:\d+$/.test(address)) {
        throw new ConfigfsError(
          'BAD_ADDRESS',
          `unexpected TPG address "${address}" in ${lun.tpgPath}/address`,
        );
      }
      const hctl = `${address}:${lun.lun}`;
      const blockDir = `${this.roots.sys}/bus/scsi/devices/${hctl}/block`;
      const entries = await this.fs.readdir(blockDir).catch(() => []);
      const name = entries[0]?.name;
      if (!name) return undefined;
      const devFile = await this.fs.readFile(`${blockDir}/${name}/dev`).catch(() => undefined);
      if (devFile === undefined) return undefined;
      const [major, minor] = parseDevNumbers(devFile, `${blockDir}/${name}/dev`);
      const devPath = `${this.roots.dev}/${name}`;
      if (!(await this.fs.exists(devPath))) return undefined;
      const sectors = Number((await this.read(`${blockDir}/${name}/size`)).trim());
      return { name, devPath, major, minor, hctl, sizeBytes: sectors * 512 };
    });
  }

  /**
   * Removes one loopback LUN (link, then directory). When its TPG has no LUN
   * left and the target is ours, the target goes too. Idempotent.
   */
  async removeLun(lun: LoopbackLun): Promise<void> {
    await this.serialized(async () => {
      await this.removeLunDir(lun.path);
      const targetRel = `loopback/${lun.wwn}`;
      const targetPath = `${this.targetRoot}/${targetRel}`;
      if (!(await this.fs.exists(targetPath))) {
        await this.dropMarker(targetRel);
        return;
      }
      // LUN dirs without a link are leftovers of a crash, not LUNs in use.
      for (const lunDir of await this.listLunDirs(lun.tpgPath)) {
        if ((await this.describeLun(`${lun.tpgPath}/lun/${lunDir}`)).alias !== undefined) return;
      }
      const owner = await this.owners.read(targetRel);
      if (owner && (owner.pid === this.owners.pid || !(await this.owners.isAlive(owner)))) {
        await this.removeTargetUnlocked('loopback', lun.wwn);
      }
    });
  }

  /** Removes a whole target of any fabric: LUNs, ACLs, portals, nexus, TPGs. Idempotent. */
  async removeTarget(fabric: string, wwn: string): Promise<void> {
    await this.serialized(() => this.removeTargetUnlocked(fabric, wwn));
  }

  // ---------------------------------------------------------------- iSCSI

  /** Exports backstores through an LIO iSCSI target (demo mode or per-initiator ACLs). */
  async exportIscsi(options: IscsiExportOptions): Promise<IscsiTarget> {
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
    const initiators =
      access.mode === 'acl' ? access.initiators.map((acl, i) => validateAcl(acl, i, luns)) : [];
    if (access.mode !== 'demo' && access.mode !== 'acl') {
      throw new InvalidOptionError('access.mode', 'must be "demo" or "acl"');
    }

    return this.serialized(() =>
      this.transaction(`exporting iSCSI target ${iqn}`, async (tx) => {
        for (const lun of luns)
          await this.requireEnabledBackstore(lun.backstore, this.backstorePath(lun.backstore));
        const targetRel = `iscsi/${iqn}`;
        const targetPath = `${this.targetRoot}/${targetRel}`;
        if (await this.fs.exists(targetPath)) throw new AlreadyExistsError(`iSCSI target ${iqn}`, targetPath);
        const tpgPath = `${targetPath}/tpgt_${tpgt}`;
        await this.owners.claim(targetRel);
        tx.add(`release marker of ${targetRel}`, () => this.owners.release(targetRel));
        await this.ensureDir(`${this.targetRoot}/iscsi`);
        await this.mkdir(tx, targetPath);
        await this.mkdir(tx, tpgPath);
        for (const lun of luns) {
          const lunPath = `${tpgPath}/lun/lun_${lun.lun}`;
          await this.mkdir(tx, lunPath);
          await this.link(tx, this.backstorePath(lun.backstore), `${lunPath}/${lun.alias}`);
        }
        for (const portal of portals) await this.mkdir(tx, `${tpgPath}/np/${portalDirName(portal)}`);
        if (access.mode === 'demo') {
          await this.write(`${tpgPath}/attrib/authentication`, '0');
          await this.write(`${tpgPath}/attrib/generate_node_acls`, '1');
          await this.write(`${tpgPath}/attrib/cache_dynamic_acls`, '1');
          await this.write(`${tpgPath}/attrib/demo_mode_write_protect`, access.writeProtect ? '1' : '0');
        } else {
          const chap = initiators.some((acl) => acl.chap !== undefined);
          await this.write(`${tpgPath}/attrib/generate_node_acls`, '0');
          await this.write(`${tpgPath}/attrib/authentication`, chap ? '1' : '0');
          for (const acl of initiators) {
            const aclPath = `${tpgPath}/acls/${acl.iqn}`;
            await this.mkdir(tx, aclPath);
            if (acl.chap) {
              await this.write(`${aclPath}/auth/userid`, acl.chap.userid);
              await this.write(`${aclPath}/auth/password`, acl.chap.password);
            }
            for (const mapped of acl.mappedLuns) {
              const mappedPath = `${aclPath}/lun_${mapped.mappedLun}`;
              await this.mkdir(tx, mappedPath);
              await this.link(
                tx,
                `${tpgPath}/lun/lun_${mapped.tpgLun}`,
                `${mappedPath}/tpg_lun_${mapped.tpgLun}`,
              );
              if (mapped.writeProtect) await this.write(`${mappedPath}/write_protect`, '1');
            }
          }
        }
        if (options.enable ?? true) {
          await this.write(`${tpgPath}/enable`, '1');
          tx.add(`disable ${tpgPath}`, () => this.write(`${tpgPath}/enable`, '0'));
        }
        return { kind: 'iscsi-target', iqn, tpgt, path: targetPath, tpgPath, portals, luns };
      }),
    );
  }

  // ---------------------------------------------------------------- teardown

  /**
   * Removes handles in dependency order: LUNs and targets first, then
   * backstores. Missing objects are skipped, so it is safe to call twice or on
   * the handles of a half-finished setup. Errors are collected and the first
   * one is rethrown after every handle was tried.
   */
  async teardown(handles: readonly Handle[]): Promise<void> {
    const rank = (handle: Handle) => (handle.kind === 'backstore' ? 1 : 0);
    const ordered = [...handles].reverse().sort((a, b) => rank(a) - rank(b));
    const errors: unknown[] = [];
    for (const handle of ordered) {
      try {
        if (handle.kind === 'loopback-lun') await this.removeLun(handle);
        else if (handle.kind === 'iscsi-target') await this.removeTarget('iscsi', handle.iqn);
        else await this.removeBackstore(handle);
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  // ---------------------------------------------------------------- reattach

  /**
   * The user backstore `name`, with its owner and the loopback LUNs exporting it: what
   * a restarted process checks before adopting it (adoptUserBackstore). Undefined when
   * there is none.
   */
  async findUserBackstore(name: string): Promise<FoundUserBackstore | undefined> {
    validateObjectName('backstore name', name);
    const ref = (await this.listBackstoreRefs()).find((r) => r.plugin === 'user' && r.name === name);
    if (ref === undefined) return undefined;
    const path = this.backstorePath(ref);
    const info = parseBackstoreInfo(await this.fs.readFile(`${path}/info`).catch(() => ''));
    const serialText = await this.fs.readFile(`${path}/wwn/vpd_unit_serial`).catch(() => '');
    const blockSize = Number((await this.fs.readFile(`${path}/attrib/hw_block_size`).catch(() => '')).trim());
    const backstore: UserBackstore = {
      kind: 'backstore',
      plugin: 'user',
      hba: ref.hba,
      name,
      path,
      devConfig: info.config ?? '',
      size: info.size ?? 0,
      blockSize: Number.isSafeInteger(blockSize) && blockSize > 0 ? blockSize : (info.sectorSize ?? 0),
      serial: /Number:\s*(\S+)/.exec(serialText)?.[1],
    };
    const owner = await this.owners.read(relativeBackstore(ref));
    const ownedByUs = owner !== undefined && (await this.owners.isOwn(owner));
    const ownerAlive = owner !== undefined && (ownedByUs || (await this.owners.isAlive(owner)));
    const luns: LoopbackLun[] = [];
    for (const wwn of await this.listTargetNames('loopback')) {
      const targetPath = `${this.targetRoot}/loopback/${wwn}`;
      for (const tag of await this.listTpgTags(targetPath)) {
        const tpg = await this.describeTpg(`${targetPath}/tpgt_${tag}`, tag);
        for (const lun of tpg.luns) {
          const linked = lun.backstore;
          if (!linked || linked.plugin !== 'user' || linked.hba !== ref.hba || linked.name !== name) continue;
          luns.push({
            kind: 'loopback-lun',
            wwn,
            tpgt: tag,
            lun: lun.index,
            alias: lun.alias ?? name,
            nexus: tpg.nexus ?? '',
            backstore: ref,
            tpgPath: tpg.path,
            path: `${tpg.path}/lun/lun_${lun.index}`,
          });
        }
      }
    }
    const tagged = backstore.devConfig.startsWith(`${OWN_SUBTYPE}/`);
    return { backstore, owner, ownerAlive, ownedByUs, tagged, luns };
  }

  /**
   * Makes a user backstore whose owner is gone ours: its marker and those of the
   * loopback targets exporting it are taken over (the backstore's with `note`).
   * Nothing in configfs changes. Refused with InUseError while the owner lives, and
   * for a backstore this library did not make.
   */
  async adoptUserBackstore(
    found: FoundUserBackstore,
    note?: Readonly<Record<string, string>>,
  ): Promise<void> {
    await this.serialized(async () => {
      const rel = relativeBackstore(found.backstore);
      if (!found.tagged) throw new InUseError(`backstore ${rel}`, ['another tool (not tagged tcmu-node/)']);
      const current = await this.owners.read(rel);
      if (current && !(await this.owners.isOwn(current)) && (await this.owners.isAlive(current))) {
        throw new InUseError(`backstore ${rel}`, [`process ${current.pid}`]);
      }
      await this.owners.claim(rel, note);
      for (const wwn of new Set(found.luns.map((lun) => lun.wwn))) {
        const targetRel = `loopback/${wwn}`;
        const record = await this.owners.read(targetRel);
        if (record && (await this.owners.isOwn(record))) continue;
        if (record && (await this.owners.isAlive(record))) continue; // shared with a live process: stays theirs
        await this.owners.claim(targetRel);
      }
    });
  }

  /**
   * Writes `action/<name>` of a user backstore (`block_dev`, `reset_ring`,
   * `free_kept_buf`): see target_core_user.c for what each does.
   */
  async writeUserAction(ref: BackstoreRef, action: 'block_dev' | 'reset_ring', value: number): Promise<void> {
    await this.write(`${this.backstorePath(ref)}/action/${action}`, String(value));
  }

  /**
   * Blocks a user backstore's ring and resets it (tcmu_block_dev, then tcmu_reset_ring):
   * new commands get BUSY, those in the ring complete with BUSY (level 1, retried) or
   * NOT READY 08/00 (level 2), and cmd_head = cmd_tail = 0. `block_dev` 0 unblocks.
   */
  async blockAndResetRing(ref: BackstoreRef, level: 1 | 2): Promise<void> {
    await this.writeUserAction(ref, 'block_dev', 1);
    await this.writeUserAction(ref, 'reset_ring', level);
  }

  /** Writes one `attrib/*` value of a backstore (e.g. cmd_time_out), validated like creation's. */
  async writeAttribute(ref: BackstoreRef, name: string, value: number): Promise<void> {
    const attributes = validateAttributes(ref.plugin, { [name]: value });
    await this.writeAttributes(this.backstorePath(ref), attributes);
  }

  // ---------------------------------------------------------------- inventory

  /** Everything in configfs, ours and others', with ownership and staleness. */
  async list(): Promise<Inventory> {
    const markers = new Map<string, OwnerRecord>();
    for (const record of await this.owners.list()) markers.set(record.path, record);
    const backstores: BackstoreEntry[] = [];
    for (const ref of await this.listBackstoreRefs()) {
      const path = this.backstorePath(ref);
      const info = parseBackstoreInfo(await this.fs.readFile(`${path}/info`).catch(() => ''));
      const enabled = (await this.fs.readFile(`${path}/enable`).catch(() => '0')).trim() === '1';
      const serialText = await this.fs.readFile(`${path}/wwn/vpd_unit_serial`).catch(() => '');
      const serial = /Number:\s*(\S+)/.exec(serialText)?.[1];
      const tagged = ref.plugin === 'user' && (info.config ?? '').startsWith(`${OWN_SUBTYPE}/`);
      const ownership = await this.ownership(markers.get(relativeBackstore(ref)), tagged);
      backstores.push({ ...ref, path, enabled, info, serial, ...ownership });
    }
    const targets: TargetEntry[] = [];
    for (const fabric of await this.listFabrics()) {
      for (const wwn of await this.listTargetNames(fabric)) {
        const path = `${this.targetRoot}/${fabric}/${wwn}`;
        const tpgs: TpgEntry[] = [];
        for (const tag of await this.listTpgTags(path))
          tpgs.push(await this.describeTpg(`${path}/tpgt_${tag}`, tag));
        const ownership = await this.ownership(markers.get(`${fabric}/${wwn}`), false);
        targets.push({ fabric, wwn, path, tpgs, ...ownership });
      }
    }
    return { backstores, targets };
  }

  /**
   * Removes our stale objects: those whose owner process is gone (or unknown).
   * Never touches objects without our mark or with a live owner.
   */
  async cleanup(): Promise<CleanupReport> {
    return this.serialized(async () => {
      const inventory = await this.list();
      const removed: string[] = [];
      const skipped: Array<{ path: string; reason: string }> = [];
      const staleUser = new Set(
        inventory.backstores.filter((b) => b.stale && b.plugin === 'user').map((b) => relativeBackstore(b)),
      );
      for (const target of inventory.targets) {
        if (!target.stale) continue;
        for (const tpg of target.tpgs) {
          for (const lun of tpg.luns) {
            if (lun.backstore && staleUser.has(relativeBackstore(lun.backstore))) {
              await this.quiesceDeadRing(
                lun.backstore,
                target.fabric === 'loopback' ? tpg : undefined,
                lun.index,
              );
            }
          }
        }
        await this.removeTargetUnlocked(target.fabric, target.wwn);
        removed.push(`${target.fabric}/${target.wwn}`);
      }
      for (const backstore of inventory.backstores) {
        if (!backstore.stale) continue;
        const rel = relativeBackstore(backstore);
        const users = await this.findLunsUsing(backstore);
        if (users.length > 0) {
          skipped.push({ path: rel, reason: `still linked by ${users.join(', ')}` });
          continue;
        }
        await this.removeBackstoreUnlocked(backstore, false);
        removed.push(rel);
      }
      // Markers whose object is gone (crash between marker and mkdir, or after rmdir).
      for (const record of await this.owners.list()) {
        if (await this.owners.isAlive(record)) continue;
        if (!(await this.fs.exists(`${this.targetRoot}/${record.path}`)))
          await this.owners.releaseStale(record);
      }
      return { removed, skipped };
    });
  }

  /** targetcli-compatible JSON (saveconfig.json) of what exists; see saveconfig.ts. */
  async exportConfig(options: { ownedOnly?: boolean } = {}): Promise<SaveConfig> {
    return exportConfig(this, options);
  }

  /** Recreates a saveconfig.json document, all or nothing; returns the handles. */
  async importConfig(config: SaveConfig): Promise<Handle[]> {
    return importConfig(this, config);
  }

  // ---------------------------------------------------------------- internals

  backstorePath(ref: BackstoreRef): string {
    if (ref.plugin !== 'user' && ref.plugin !== 'fileio') {
      throw new InvalidOptionError('backstore.plugin', `unsupported plugin "${String(ref.plugin)}"`);
    }
    validateInteger('backstore.hba', ref.hba, 0, MAX_HBA);
    validateObjectName('backstore name', ref.name);
    return `${this.targetRoot}/${relativeBackstore(ref)}`;
  }

  /** Runs `body` after every earlier operation of this manager finished. */
  /** One change at a time: in this manager (a queue) and across processes (the lock). */
  private serialized<T>(body: () => Promise<T>): Promise<T> {
    const locked = async () => {
      const release = await this.lock.acquire();
      try {
        return await body();
      } finally {
        await release();
      }
    };
    const run = this.queue.then(locked, locked);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async transaction<T>(what: string, body: (tx: Transaction) => Promise<T>): Promise<T> {
    const tx = new Transaction();
    try {
      return await body(tx);
    } catch (error) {
      const rollbackErrors = await tx.rollback();
      if (rollbackErrors.length > 0) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new RollbackError(
          `${what} failed (${reason}) and ${rollbackErrors.length} rollback step(s) failed too`,
          error,
          rollbackErrors,
        );
      }
      throw error;
    }
  }

  private async reserveBackstore(
    tx: Transaction,
    plugin: BackstorePlugin,
    name: string,
    hba: number | undefined,
    note?: Readonly<Record<string, string>>,
  ): Promise<BackstoreRef> {
    // saveconfig addresses backstores as /backstores/<plugin>/<name>: keep names unique per plugin.
    for (const existing of await this.listBackstoreRefs()) {
      if (existing.plugin === plugin && existing.name === name) {
        throw new AlreadyExistsError(`${plugin} backstore ${name}`, this.backstorePath(existing));
      }
    }
    const ref: BackstoreRef = { plugin, hba: hba ?? (await this.lowestFreeHba()), name };
    const rel = relativeBackstore(ref);
    await this.owners.claim(rel, note);
    tx.add(`release marker of ${rel}`, () => this.owners.release(rel));
    const hbaPath = `${this.targetRoot}/core/${plugin}_${ref.hba}`;
    if (!(await this.fs.exists(hbaPath))) {
      try {
        await this.fs.mkdir(hbaPath);
        tx.add(`remove ${hbaPath} if empty`, () => this.removeHbaIfEmpty(hbaPath));
      } catch (error) {
        // Another process may have created it in between: sharing an HBA is fine.
        if (errnoOf(error) !== 'EEXIST') throw new KernelError('mkdir', hbaPath, errnoOf(error), error);
      }
    }
    await this.mkdir(tx, `${hbaPath}/${name}`);
    return ref;
  }

  private async lowestFreeHba(): Promise<number> {
    const used = new Set<number>();
    for (const entry of await this.fs.readdir(`${this.targetRoot}/core`).catch(() => [])) {
      const match = HBA_DIR.exec(entry.name);
      if (match && entry.kind === 'dir') used.add(Number(match[2]));
    }
    let index = 0;
    while (used.has(index)) index++;
    return index;
  }

  private async removeBackstoreUnlocked(ref: BackstoreRef, force: boolean): Promise<void> {
    const path = this.backstorePath(ref);
    const rel = relativeBackstore(ref);
    if (await this.fs.exists(path)) {
      const users = await this.findLunsUsing(ref);
      if (users.length > 0 && !force) throw new InUseError(`backstore ${rel}`, users);
      for (const lunPath of users) {
        await this.removeLunDir(`${this.targetRoot}/${lunPath}`);
        const [fabric, wwn, tpg] = lunPath.split('/');
        if (!fabric || !wwn || !tpg) continue;
        const targetRel = `${fabric}/${wwn}`;
        const owner = await this.owners.read(targetRel);
        const left = await this.listLunDirs(`${this.targetRoot}/${targetRel}/${tpg}`);
        if (
          owner &&
          left.length === 0 &&
          (owner.pid === this.owners.pid || !(await this.owners.isAlive(owner)))
        ) {
          await this.removeTargetUnlocked(fabric, wwn);
        }
      }
      await this.rmdirIfPresent(path);
    }
    await this.dropMarker(rel);
    await this.removeHbaIfEmpty(`${this.targetRoot}/core/${ref.plugin}_${ref.hba}`);
  }

  /**
   * Before unlinking a LUN whose ring nobody serves any more, so that the removal cannot
   * wait on it: the kernel waits for every command in flight (transport_clear_lun_ref, no
   * timeout of its own) and sd sends SYNCHRONIZE CACHE on removal when the write cache is
   * on (sd_sync_cache: 3 tries), each held for the ring's cmd_time_out, which cannot be
   * changed while exported (tcmu_cmd_time_out_store). So: the disk's cache goes
   * "temporary write through" (no SYNCHRONIZE CACHE), then block_dev=1 (new commands
   * get BUSY at once) and reset_ring=2 (those left in the ring complete with NOT READY,
   * LOGICAL UNIT COMMUNICATION FAILURE: nobody will answer them). Best effort.
   */
  private async quiesceDeadRing(ref: BackstoreRef, tpg: TpgEntry | undefined, lun: number): Promise<void> {
    const host = tpg?.address?.split(':')[0];
    if (host !== undefined && tpg !== undefined) {
      const cacheType = `${this.roots.sys}/class/scsi_disk/${host}:0:${tpg.tag}:${lun}/cache_type`;
      await this.fs.writeFile(cacheType, 'temporary write through').catch(() => undefined);
    }
    await this.blockAndResetRing(ref, 2).catch(() => undefined);
  }

  /** Our marker goes with the object; a dead owner's too; a live owner's stays (its owner releases it). */
  private async dropMarker(rel: string): Promise<void> {
    const record = await this.owners.read(rel);
    if (record === undefined) return;
    if (await this.owners.isOwn(record)) await this.owners.release(rel);
    else await this.owners.releaseStale(record);
  }

  /** An HBA dir holds only attribute files once its devices are gone; never leave it empty. */
  private async removeHbaIfEmpty(hbaPath: string): Promise<void> {
    let entries: Awaited<ReturnType<HostFs['readdir']>>;
    try {
      entries = await this.fs.readdir(hbaPath);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return;
      throw new KernelError('readdir', hbaPath, errnoOf(error), error);
    }
    if (entries.some((entry) => entry.kind === 'dir')) return;
    try {
      await this.fs.rmdir(hbaPath);
    } catch (error) {
      const code = errnoOf(error);
      // Someone created a device in it meanwhile: theirs now.
      if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EBUSY') return;
      throw new KernelError('rmdir', hbaPath, code, error);
    }
  }

  private async removeTargetUnlocked(fabric: string, wwn: string): Promise<void> {
    if (!/^[a-z0-9_]+$/.test(fabric))
      throw new InvalidOptionError('fabric', `"${fabric}" is not a fabric name`);
    if (wwn.includes('/') || wwn === '.' || wwn === '..' || wwn === '') {
      throw new InvalidOptionError('wwn', `"${wwn}" is not a target name`);
    }
    const targetRel = `${fabric}/${wwn}`;
    const targetPath = `${this.targetRoot}/${targetRel}`;
    if (await this.fs.exists(targetPath)) {
      for (const tag of await this.listTpgTags(targetPath)) {
        const tpgPath = `${targetPath}/tpgt_${tag}`;
        if (await this.fs.exists(`${tpgPath}/enable`)) {
          await this.fs.writeFile(`${tpgPath}/enable`, '0').catch(() => undefined);
        }
        // ACLs first: their mapped LUNs link to the TPG's LUNs (rtslib's order).
        for (const acl of await this.listDirs(`${tpgPath}/acls`)) {
          const aclPath = `${tpgPath}/acls/${acl}`;
          for (const mapped of await this.listDirs(aclPath)) {
            if (LUN_DIR.test(mapped)) await this.removeLunDir(`${aclPath}/${mapped}`);
          }
          await this.rmdirIfPresent(aclPath);
        }
        for (const lunDir of await this.listLunDirs(tpgPath))
          await this.removeLunDir(`${tpgPath}/lun/${lunDir}`);
        for (const portal of await this.listDirs(`${tpgPath}/np`))
          await this.rmdirIfPresent(`${tpgPath}/np/${portal}`);
        if (fabric === 'loopback') await this.dropNexus(tpgPath);
        await this.rmdirIfPresent(tpgPath);
      }
      await this.rmdirIfPresent(targetPath);
    }
    await this.dropMarker(targetRel);
  }

  /** Unlinks every symlink in a LUN (or mapped LUN) dir, then removes the dir. */
  private async removeLunDir(lunPath: string): Promise<void> {
    let entries: Awaited<ReturnType<HostFs['readdir']>>;
    try {
      entries = await this.fs.readdir(lunPath);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return;
      throw new KernelError('readdir', lunPath, errnoOf(error), error);
    }
    for (const entry of entries) {
      if (entry.kind !== 'symlink') continue;
      try {
        await this.fs.unlink(`${lunPath}/${entry.name}`);
      } catch (error) {
        if (errnoOf(error) !== 'ENOENT')
          throw new KernelError('unlink', `${lunPath}/${entry.name}`, errnoOf(error), error);
      }
    }
    await this.rmdirIfPresent(lunPath);
  }

  private async dropNexus(tpgPath: string): Promise<void> {
    try {
      await this.fs.writeFile(`${tpgPath}/nexus`, 'NULL');
    } catch (error) {
      const code = errnoOf(error);
      // ENODEV: no nexus (tcm_loop_drop_nexus); ENOENT: TPG already gone.
      if (code === 'ENODEV' || code === 'ENOENT') return;
      throw new KernelError('write NULL to', `${tpgPath}/nexus`, code, error);
    }
  }

  private async readNexus(tpgPath: string): Promise<string> {
    try {
      return (await this.fs.readFile(`${tpgPath}/nexus`)).trim();
    } catch (error) {
      if (errnoOf(error) === 'ENODEV') return '';
      throw new KernelError('read', `${tpgPath}/nexus`, errnoOf(error), error);
    }
  }

  /** `<fabric>/<wwn>/tpgt_<n>/lun/lun_<m>` paths whose link resolves to the backstore. */
  private async findLunsUsing(ref: BackstoreRef): Promise<string[]> {
    const wanted = await this.fs.realpath(this.backstorePath(ref)).catch(() => this.backstorePath(ref));
    const users: string[] = [];
    for (const fabric of await this.listFabrics()) {
      for (const wwn of await this.listTargetNames(fabric)) {
        const targetPath = `${this.targetRoot}/${fabric}/${wwn}`;
        for (const tag of await this.listTpgTags(targetPath)) {
          const tpgPath = `${targetPath}/tpgt_${tag}`;
          for (const lunDir of await this.listLunDirs(tpgPath)) {
            const lun = await this.describeLun(`${tpgPath}/lun/${lunDir}`);
            if (lun.resolved === wanted) users.push(`${fabric}/${wwn}/tpgt_${tag}/lun/${lunDir}`);
          }
        }
      }
    }
    return users;
  }

  private async describeLun(lunPath: string): Promise<{ alias?: string; resolved?: string }> {
    const entries = await this.fs.readdir(lunPath).catch(() => []);
    const link = entries.find((entry) => entry.kind === 'symlink');
    if (!link) return {};
    const resolved = await this.fs.realpath(`${lunPath}/${link.name}`).catch(() => undefined);
    return resolved === undefined ? { alias: link.name } : { alias: link.name, resolved };
  }

  private async backstoreOf(resolved: string | undefined): Promise<BackstoreRef | undefined> {
    if (!resolved) return undefined;
    const core = await this.fs.realpath(`${this.targetRoot}/core`).catch(() => `${this.targetRoot}/core`);
    if (!resolved.startsWith(`${core}/`)) return undefined;
    const [hbaDir, name] = resolved.slice(core.length + 1).split('/');
    const match = hbaDir ? HBA_DIR.exec(hbaDir) : null;
    if (!match || !name) return undefined;
    const plugin = match[1];
    if (plugin !== 'user' && plugin !== 'fileio') return undefined;
    return { plugin, hba: Number(match[2]), name };
  }

  private async describeTpg(tpgPath: string, tag: number): Promise<TpgEntry> {
    const luns: LunEntry[] = [];
    for (const lunDir of await this.listLunDirs(tpgPath)) {
      const lun = await this.describeLun(`${tpgPath}/lun/${lunDir}`);
      luns.push({
        index: Number(LUN_DIR.exec(lunDir)![1]),
        alias: lun.alias,
        backstore: await this.backstoreOf(lun.resolved),
      });
    }
    const portals: Portal[] = [];
    for (const portal of await this.listDirs(`${tpgPath}/np`)) {
      try {
        portals.push(validatePortal(portal));
      } catch {
        // Not a portal we can parse (e.g. a future naming scheme): leave it out.
      }
    }
    const acls: AclEntry[] = [];
    for (const iqn of await this.listDirs(`${tpgPath}/acls`)) {
      const aclPath = `${tpgPath}/acls/${iqn}`;
      const userid = (await this.fs.readFile(`${aclPath}/auth/userid`).catch(() => '')).trim();
      const password = (await this.fs.readFile(`${aclPath}/auth/password`).catch(() => '')).trim();
      const mappedLuns: MappedLunEntry[] = [];
      for (const mapped of await this.listDirs(aclPath)) {
        const match = LUN_DIR.exec(mapped);
        if (!match) continue;
        const entries = await this.fs.readdir(`${aclPath}/${mapped}`).catch(() => []);
        const link = entries.find((entry) => entry.kind === 'symlink');
        const target = link
          ? await this.fs.realpath(`${aclPath}/${mapped}/${link.name}`).catch(() => undefined)
          : undefined;
        const tpgLun = target ? LUN_DIR.exec(target.slice(target.lastIndexOf('/') + 1))?.[1] : undefined;
        const wp = (await this.fs.readFile(`${aclPath}/${mapped}/write_protect`).catch(() => '0')).trim();
        mappedLuns.push({
          index: Number(match[1]),
          tpgLun: tpgLun === undefined ? undefined : Number(tpgLun),
          writeProtect: wp === '1',
        });
      }
      acls.push({ iqn, chap: userid && password ? { userid, password } : undefined, mappedLuns });
    }
    const attributes: Record<string, number> = {};
    for (const name of [
      'authentication',
      'generate_node_acls',
      'cache_dynamic_acls',
      'demo_mode_write_protect',
    ]) {
      const text = await this.fs.readFile(`${tpgPath}/attrib/${name}`).catch(() => undefined);
      if (text !== undefined && /^-?\d+$/.test(text.trim())) attributes[name] = Number(text.trim());
    }
    const enableText = await this.fs.readFile(`${tpgPath}/enable`).catch(() => undefined);
    const address = await this.fs.readFile(`${tpgPath}/address`).catch(() => undefined);
    const nexus = await this.fs.readFile(`${tpgPath}/nexus`).catch(() => undefined);
    return {
      tag,
      path: tpgPath,
      enabled: enableText === undefined ? undefined : enableText.trim() === '1',
      nexus: nexus?.trim() || undefined,
      address: address?.trim() || undefined,
      luns,
      portals,
      acls,
      attributes,
    };
  }

  private async ownership(record: OwnerRecord | undefined, tagged: boolean) {
    if (record) {
      const alive = await this.owners.isAlive(record);
      return { owned: true, ownerPid: record.pid, stale: !alive };
    }
    // Tagged but without a marker: the owner is unknown (marker lost), so nobody holds it.
    return { owned: tagged, ownerPid: undefined, stale: tagged };
  }

  private async listBackstoreRefs(): Promise<BackstoreRef[]> {
    const refs: BackstoreRef[] = [];
    for (const entry of await this.fs.readdir(`${this.targetRoot}/core`).catch(() => [])) {
      const match = HBA_DIR.exec(entry.name);
      if (!match || entry.kind !== 'dir') continue;
      const plugin = match[1];
      if (plugin !== 'user' && plugin !== 'fileio') continue;
      for (const name of await this.listDirs(`${this.targetRoot}/core/${entry.name}`)) {
        refs.push({ plugin, hba: Number(match[2]), name });
      }
    }
    return refs.sort(
      (a, b) => a.plugin.localeCompare(b.plugin) || a.hba - b.hba || a.name.localeCompare(b.name),
    );
  }

  private async listFabrics(): Promise<string[]> {
    const entries = await this.fs.readdir(this.targetRoot).catch(() => []);
    return entries
      .filter((entry) => entry.kind === 'dir' && entry.name !== 'core')
      .map((entry) => entry.name)
      .sort();
  }

  private async listTargetNames(fabric: string): Promise<string[]> {
    const names = await this.listDirs(`${this.targetRoot}/${fabric}`);
    return names.filter((name) => !FABRIC_DEFAULT_GROUPS.has(name));
  }

  private async listTpgTags(targetPath: string): Promise<number[]> {
    const tags: number[] = [];
    for (const name of await this.listDirs(targetPath)) {
      const match = TPG_DIR.exec(name);
      if (match) tags.push(Number(match[1]));
    }
    return tags.sort((a, b) => a - b);
  }

  private async listLunDirs(tpgPath: string): Promise<string[]> {
    const names = await this.listDirs(`${tpgPath}/lun`);
    return names.filter((name) => LUN_DIR.test(name)).sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
  }

  private async listDirs(path: string): Promise<string[]> {
    const entries = await this.fs.readdir(path).catch(() => []);
    return entries
      .filter((entry) => entry.kind === 'dir')
      .map((entry) => entry.name)
      .sort();
  }

  private async requireEnabledBackstore(ref: BackstoreRef, path: string): Promise<void> {
    if (!(await this.fs.exists(path))) throw new NotFoundError(`backstore ${ref.plugin}/${ref.name}`, path);
    const enabled = (await this.read(`${path}/enable`)).trim();
    if (enabled !== '1') {
      throw new ConfigfsError(
        'NOT_ENABLED',
        `backstore ${ref.plugin}/${ref.name} is not enabled (${path}/enable)`,
      );
    }
  }

  private async requireOwnTarget(targetRel: string): Promise<void> {
    const owner = await this.owners.read(targetRel);
    if (!owner || owner.pid !== this.owners.pid) {
      throw new AlreadyExistsError(
        `target ${targetRel} (not owned by this process)`,
        `${this.targetRoot}/${targetRel}`,
      );
    }
  }

  private async writeAttributes(path: string, attributes: Attributes): Promise<void> {
    for (const [name, value] of Object.entries(attributes)) {
      await this.write(`${path}/attrib/${name}`, String(value));
    }
  }

  private async ensureDir(path: string): Promise<void> {
    if (await this.fs.exists(path)) return;
    try {
      await this.fs.mkdir(path);
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') throw new KernelError('mkdir', path, errnoOf(error), error);
    }
  }

  private async mkdir(tx: Transaction, path: string): Promise<void> {
    try {
      await this.fs.mkdir(path);
    } catch (error) {
      if (errnoOf(error) === 'EEXIST') throw new AlreadyExistsError('directory', path);
      throw new KernelError('mkdir', path, errnoOf(error), error);
    }
    tx.add(`rmdir ${path}`, () => this.rmdirIfPresent(path));
  }

  private async link(tx: Transaction, target: string, path: string): Promise<void> {
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

  private async rmdirIfPresent(path: string): Promise<void> {
    try {
      await this.fs.rmdir(path);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return;
      throw new KernelError('rmdir', path, errnoOf(error), error);
    }
  }

  private async write(path: string, data: string): Promise<void> {
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

  private async read(path: string): Promise<string> {
    try {
      return await this.fs.readFile(path);
    } catch (error) {
      throw new KernelError('read', path, errnoOf(error), error);
    }
  }

  private async poll<T>(what: string, options: WaitOptions, probe: () => Promise<T | undefined>): Promise<T> {
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

/** `core/<plugin>_<hba>/<name>`. */
export function relativeBackstore(ref: BackstoreRef): string {
  return `core/${ref.plugin}_${ref.hba}/${ref.name}`;
}

function parseDevNumbers(text: string, path: string): [number, number] {
  const match = /^(\d+):(\d+)\s*$/.exec(text);
  if (!match) throw new ConfigfsError('BAD_DEV', `unexpected device numbers "${text.trim()}" in ${path}`);
  return [Number(match[1]), Number(match[2])];
}

/** rtslib's scheme: the LIO OUI prefix 5001405 plus 9 random hex digits. */
export function randomNaa(): string {
  return `naa.5001405${randomBytes(5).toString('hex').slice(0, 9)}`;
}

/** The initiator side of a loopback nexus: same NAA, last digit changed so it differs. */
function nexusFor(wwn: string): string {
  const last = wwn.at(-1)!;
  return `${wwn.slice(0, -1)}${last === 'f' ? 'e' : 'f'}`;
}

export function randomIqn(): string {
  return `iqn.2003-01.org.linux-iscsi.tcmu-node:sn.${randomBytes(6).toString('hex')}`;
}

interface ValidatedAcl {
  readonly iqn: string;
  readonly chap: { userid: string; password: string } | undefined;
  readonly mappedLuns: ReadonlyArray<{ mappedLun: number; tpgLun: number; writeProtect: boolean }>;
}

function validateAcl(acl: InitiatorAclOptions, i: number, luns: readonly IscsiLun[]): ValidatedAcl {
  const iqn = validateIqn(`access.initiators[${i}].iqn`, acl.iqn);
  const chap = acl.chap
    ? {
        userid: validateChapField(`access.initiators[${i}].chap.userid`, acl.chap.userid),
        password: validateChapField(`access.initiators[${i}].chap.password`, acl.chap.password),
      }
    : undefined;
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

/** Writable attributes of a plugin, for export. */
export function writableAttributeNames(plugin: BackstorePlugin): string[] {
  return Object.keys(WRITABLE_ATTRIBUTES[plugin]);
}

export type { Backstore };
