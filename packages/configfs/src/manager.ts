import { Backstores } from './backstores.js';
import { ConfigfsContext } from './context.js';
import { Fabrics } from './fabrics.js';
import { type HostFs, NodeHostFs, type Roots, resolveRoots } from './host-fs.js';
import { InventoryControl } from './inventory.js';
import { Iscsi } from './iscsi.js';
import { type ConfigfsLock, SocketLock } from './lock.js';
import type {
  BackstoreRef,
  CleanupReport,
  Disk,
  FileioBackstore,
  FileioBackstoreOptions,
  FoundUserBackstore,
  Handle,
  Inventory,
  IscsiExportOptions,
  IscsiLunOptions,
  IscsiTarget,
  IscsiTargetLun,
  LoopbackLun,
  LoopbackLunOptions,
  UioDevice,
  UserBackstore,
  UserBackstoreOptions,
  WaitOptions,
} from './model.js';
import { OwnerRegistry } from './owner.js';
import { OwnershipControl } from './ownership.js';

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

/**
 * Creates, finds and removes LIO objects through configfs: TCMU (`user`) and
 * fileio backstores, tcm_loop LUNs and iSCSI targets. Every creation is
 * transactional (rolled back on failure); every removal is idempotent.
 *
 * A facade: the work is done by one part per kind of object (backstores.ts,
 * fabrics.ts, iscsi.ts, inventory.ts), and this class takes the lock
 * (ownership.ts) around every change.
 */
export class TargetManager {
  readonly fs: HostFs;
  readonly roots: Roots;
  readonly owners: OwnerRegistry;
  /** `<configfs>/target`. */
  readonly targetRoot: string;
  private readonly ownership: OwnershipControl;
  private readonly backstores: Backstores;
  private readonly fabrics: Fabrics;
  private readonly iscsi: Iscsi;
  private readonly inventory: InventoryControl;

  constructor(options: TargetManagerOptions = {}) {
    this.fs = options.fs ?? new NodeHostFs();
    this.roots = resolveRoots(options.roots);
    const ctx = new ConfigfsContext(this.fs, this.roots);
    this.targetRoot = ctx.targetRoot;
    this.owners = new OwnerRegistry(this.fs, this.roots, options.ownerPid ?? process.pid);
    const lock = options.lock ?? new SocketLock(this.roots.configfs);
    this.ownership = new OwnershipControl(this.owners, lock, this.targetRoot);
    this.backstores = new Backstores(ctx, this.ownership);
    this.fabrics = new Fabrics(ctx, this.ownership, this.backstores);
    this.iscsi = new Iscsi(ctx, this.ownership, this.backstores);
    this.inventory = new InventoryControl(ctx, this.ownership, this.backstores, this.fabrics);
  }

  // ---------------------------------------------------------------- backstores

  async createUserBackstore(options: UserBackstoreOptions): Promise<UserBackstore> {
    return this.ownership.serialized(this.backstores.prepareUser(options));
  }

  async createFileioBackstore(options: FileioBackstoreOptions): Promise<FileioBackstore> {
    return this.ownership.serialized(this.backstores.prepareFileio(options));
  }

  /**
   * Removes a backstore and then its HBA directory if that is left empty.
   * LUNs that still link to it make this fail with InUseError unless `force`,
   * which removes those LUNs first (and targets of ours left without LUNs).
   */
  async removeBackstore(ref: BackstoreRef, options: { force?: boolean } = {}): Promise<void> {
    await this.ownership.serialized(() => this.inventory.removeBackstore(ref, options.force ?? false));
  }

  /** Parsed `info` of a backstore. */
  async readBackstoreInfo(ref: BackstoreRef) {
    return this.backstores.readInfo(ref);
  }

  /** Finds the UIO device of an enabled TCMU backstore, waiting for it to appear. */
  async findUio(ref: BackstoreRef, options: WaitOptions = {}): Promise<UioDevice> {
    return this.backstores.findUio(ref, options);
  }

  // ---------------------------------------------------------------- loopback

  /**
   * Exports a backstore as a local SCSI disk through tcm_loop. Creates the target
   * and TPG if needed and writes the I_T nexus BEFORE the LUN: linking a LUN
   * without a nexus makes the SCSI scan fail (`TCM_Loop I_T Nexus does not exist`).
   */
  async createLoopbackLun(options: LoopbackLunOptions): Promise<LoopbackLun> {
    return this.ownership.serialized(this.fabrics.prepareLoopbackLun(options));
  }

  /**
   * Waits for the SCSI disk of a loopback LUN: `<tpg>/address` gives
   * `<host>:0:<tpgt>`, the disk is `/sys/bus/scsi/devices/<host>:0:<tpgt>:<lun>/block/*`.
   */
  async waitForDisk(lun: LoopbackLun, options: WaitOptions = {}): Promise<Disk> {
    return this.fabrics.waitForDisk(lun, options);
  }

  /**
   * Removes one loopback LUN (link, then directory). When its TPG has no LUN
   * left and the target is ours, the target goes too. Idempotent.
   */
  async removeLun(lun: LoopbackLun): Promise<void> {
    await this.ownership.serialized(() => this.fabrics.removeLun(lun));
  }

  /** Removes a whole target of any fabric: LUNs, ACLs, portals, nexus, TPGs. Idempotent. */
  async removeTarget(fabric: string, wwn: string): Promise<void> {
    await this.ownership.serialized(() => this.fabrics.removeTarget(fabric, wwn));
  }

  // ---------------------------------------------------------------- iSCSI

  /** Exports backstores through an LIO iSCSI target (demo mode or per-initiator ACLs). */
  async exportIscsi(options: IscsiExportOptions): Promise<IscsiTarget> {
    return this.ownership.serialized(this.iscsi.prepareExport(options));
  }

  /**
   * Adds a LUN to an iSCSI target this process exported, mapped for each of its initiator ACLs:
   * several backstores behind one target.
   */
  async addIscsiLun(options: IscsiLunOptions): Promise<IscsiTargetLun> {
    return this.ownership.serialized(this.iscsi.prepareAddLun(options));
  }

  /** Removes one iSCSI LUN and its ACL mappings; the target goes with its last LUN when ours. Idempotent. */
  async removeIscsiLun(lun: IscsiTargetLun): Promise<void> {
    await this.ownership.serialized(() => this.fabrics.removeIscsiLun(lun));
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
        else if (handle.kind === 'iscsi-lun') await this.removeIscsiLun(handle);
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
    return this.inventory.findUserBackstore(name);
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
    await this.ownership.serialized(() => this.inventory.adoptUserBackstore(found, note));
  }

  /**
   * Writes `action/<name>` of a user backstore (`block_dev`, `reset_ring`; the device frees
   * kept buffers itself): see target_core_user.c for what each does.
   */
  async writeUserAction(ref: BackstoreRef, action: 'block_dev' | 'reset_ring', value: number): Promise<void> {
    await this.backstores.writeAction(ref, action, value);
  }

  /**
   * Blocks a user backstore's ring and resets it (tcmu_block_dev, then tcmu_reset_ring):
   * new commands get BUSY, those in the ring complete with BUSY (level 1, retried) or
   * NOT READY 08/00 (level 2), and cmd_head = cmd_tail = 0. `block_dev` 0 unblocks.
   */
  async blockAndResetRing(ref: BackstoreRef, level: 1 | 2): Promise<void> {
    await this.backstores.blockAndResetRing(ref, level);
  }

  /** Writes one `attrib/*` value of a backstore (e.g. cmd_time_out), validated like creation's. */
  async writeAttribute(ref: BackstoreRef, name: string, value: number): Promise<void> {
    await this.backstores.writeAttribute(ref, name, value);
  }

  // ---------------------------------------------------------------- inventory

  /** Everything in configfs, ours and others', with ownership and staleness. */
  async list(): Promise<Inventory> {
    return this.inventory.list();
  }

  /**
   * Removes our stale objects: those whose owner process is gone (or unknown).
   * Never touches objects without our mark or with a live owner.
   */
  async cleanup(): Promise<CleanupReport> {
    return this.ownership.serialized(() => this.inventory.cleanup());
  }

  /** `<configfs>/target/core/<plugin>_<hba>/<name>`, the ref validated. */
  backstorePath(ref: BackstoreRef): string {
    return this.backstores.path(ref);
  }
}
