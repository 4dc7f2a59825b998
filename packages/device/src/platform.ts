import type { TcmuRing } from '@tcmu/ring';
import type { IscsiInitiator } from './options.js';

/**
 * Every side effect openDevice and close() perform, as one interface: the
 * default implementation (./system.ts) drives configfs, sysfs and the ring
 * addon; tests pass one over the configfs fake tree and the ring simulator,
 * or wrap it to fail a chosen step.
 */
/** What the device asks of the ring it serves. */
export interface RingOpenOptions {
  readonly maxInFlight: number;
  /** The device's name, reported by every command. */
  readonly device: string;
  /** The I_T nexus id commands are attributed to. */
  readonly nexus: string;
  /** Gives a buffer kept with KEEP_BUF back to the kernel (see TcmuRingOptions.freeKeptBuffer). */
  readonly freeKeptBuffer: (id: number) => Promise<void>;
}

export interface DevicePlatform {
  /** Create the TCMU backstore `user_<hba>/<name>` (nl_reply_supported=-1) and enable it. */
  createBackstore(spec: BackstoreSpec): Promise<PlatformBackstore>;
  /** Find the UIO device the kernel made for the backstore. */
  findUio(backstore: PlatformBackstore): Promise<UioRef>;
  /** Open and map the ring, polling started. */
  openRing(uio: UioRef, options: RingOpenOptions): TcmuRing;
  /** Writes `id` to the backstore's action/free_kept_buf (a buffer kept with TCMU_UFLAG_KEEP_BUF). */
  freeKeptBuffer(backstore: PlatformBackstore, id: number): Promise<void>;
  /** Best effort: ask the kernel for this queue depth; returns the depth in force (if known). */
  setQueueDepth(backstore: PlatformBackstore, depth: number): Promise<number | undefined>;
  /** A loopback target (with its nexus) or an iSCSI target with a portal. */
  createTarget(spec: TargetSpec): Promise<TargetRef>;
  /** LUN numbers already used on a target. */
  usedLuns(target: TargetRef): Promise<number[]>;
  /** Link the backstore as `lun` of the target. */
  createLun(target: TargetRef, backstore: PlatformBackstore, lun: number): Promise<LunRef>;
  /** Wait for the SCSI disk of a loopback LUN. */
  waitForDisk(lun: LunRef): Promise<DiskRef>;
  /** Make `path` a block node with the disk's numbers (or a symlink to it); creates the directory. */
  makeNode(path: string, disk: DiskRef, kind: NodeKind): Promise<NodeRef>;

  /**
   * Reattach (optional; without it a name in use is always refused). The backstore
   * `name` if one of ours exists, with what is needed to decide whether to adopt it.
   */
  findBackstore?(name: string): Promise<FoundBackstore | undefined>;
  /**
   * Takes over a found backstore whose owner is gone: its ownership (with `note`),
   * then action/block_dev=1 (new commands get BUSY) and action/reset_ring=1 (those
   * the old process left in the ring complete with BUSY: retried, never replayed).
   */
  adoptBackstore?(found: FoundBackstore, note: Readonly<Record<string, string>>): Promise<PlatformBackstore>;
  /**
   * Recovery from a corrupt ring (optional): action/block_dev=1, then action/reset_ring=1
   * (commands in the ring complete with BUSY; cmd_head = cmd_tail = 0).
   */
  resetRing?(backstore: PlatformBackstore): Promise<void>;
  /**
   * Online resize (optional; without it Device.resize() refuses): the kernel's record of the
   * size, attrib/dev_size (TCMU_CMD_RECONFIG_DEVICE to a netlink listener), else `dev_size=` on control.
   */
  resizeBackstore?(backstore: PlatformBackstore, sizeBytes: number): Promise<void>;
  /** Make the SCSI disk read its capacity again (sysfs `rescan`), so /dev/sdX has the new size. */
  rescanDisk?(disk: DiskRef): Promise<void>;
  /** action/block_dev=0, once the new ring is mapped and served. */
  unblockBackstore?(backstore: PlatformBackstore): Promise<void>;
  /**
   * An existing node at `path` for this disk (same device numbers, or a symlink to
   * it): returned as ours. A node we made earlier (`ours`) that no longer fits is
   * removed (undefined: make a new one); anything else there throws EEXIST.
   */
  adoptNode?(path: string, disk: DiskRef, kind: NodeKind, ours: boolean): Promise<NodeRef | undefined>;

  removeNode(node: NodeRef): Promise<void>;
  removeLun(lun: LunRef): Promise<void>;
  removeTarget(target: TargetRef): Promise<void>;
  /** Remove the backstore, then its HBA directory when empty. */
  removeBackstore(backstore: PlatformBackstore): Promise<void>;
}

export type NodeKind = 'block' | 'symlink';

export interface BackstoreSpec {
  readonly name: string;
  readonly hba: number | undefined;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly serial: string;
  readonly hwMaxSectors: number;
  readonly maxDataAreaMb: number | undefined;
  /** attrib/cmd_time_out in seconds. */
  readonly commandTimeoutS: number;
  /** Recorded with the backstore for a process that adopts it later. */
  readonly note: Readonly<Record<string, string>>;
}

/** A backstore of ours left by an earlier process (DevicePlatform.findBackstore). */
export interface FoundBackstore {
  readonly ref: PlatformBackstore;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly serial: string | undefined;
  /** Made by this library (its devConfig is tagged), so adoptable once its owner is gone. */
  readonly ours: boolean;
  /** Pid of its owner, if it has an ownership marker. */
  readonly ownerPid: number | undefined;
  /** Its owner process is alive (this one included). */
  readonly ownerAlive: boolean;
  /** Its owner is this process. */
  readonly ownedByUs: boolean;
  /** What the owner recorded (source, node). */
  readonly note: Readonly<Record<string, string>>;
  /** The loopback LUNs exporting it. */
  readonly luns: readonly LunRef[];
}

export interface PlatformBackstore {
  readonly name: string;
  readonly hba: number;
  /** configfs directory of the backstore. */
  readonly path: string;
  /** Whatever the implementation needs to remove it. */
  readonly handle: unknown;
}

export interface UioRef {
  /** e.g. /dev/uio0 */
  readonly path: string;
  readonly mapSize: number;
}

export type TargetSpec =
  | { readonly type: 'loopback'; readonly wwn: string; readonly nexusWwn: string }
  | {
      readonly type: 'iscsi';
      readonly iqn: string;
      readonly portal: string;
      /** ACLs (demo mode off); undefined: demo mode. */
      readonly initiators: readonly IscsiInitiator[] | undefined;
    };

export interface TargetRef {
  readonly type: 'loopback' | 'iscsi';
  /** naa.… or iqn.… */
  readonly wwn: string;
  readonly path: string;
  readonly handle: unknown;
}

export interface LunRef {
  readonly target: TargetRef;
  readonly lun: number;
  readonly handle: unknown;
}

export interface DiskRef {
  /** e.g. sda */
  readonly name: string;
  /** e.g. /dev/sda */
  readonly devPath: string;
  readonly major: number;
  readonly minor: number;
  /** The SCSI address H:C:T:L in sysfs, when known. */
  readonly hctl?: string;
}

export interface NodeRef {
  readonly path: string;
  /** Directories makeNode created (removed again when empty), innermost last. */
  readonly createdDirs: readonly string[];
}
