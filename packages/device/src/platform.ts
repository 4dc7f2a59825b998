import type { TcmuRing } from '@tcmu/ring';

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
  createBackstore(spec: BackstoreSpec): Promise<BackstoreRef>;
  /** Find the UIO device the kernel made for the backstore. */
  findUio(backstore: BackstoreRef): Promise<UioRef>;
  /** Open and map the ring, polling started. */
  openRing(uio: UioRef, options: RingOpenOptions): TcmuRing;
  /** Writes `id` to the backstore's action/free_kept_buf (a buffer kept with TCMU_UFLAG_KEEP_BUF). */
  freeKeptBuffer(backstore: BackstoreRef, id: number): Promise<void>;
  /** Best effort: ask the kernel for this queue depth; returns the depth in force (if known). */
  setQueueDepth(backstore: BackstoreRef, depth: number): Promise<number | undefined>;
  /** A loopback target (with its nexus) or an iSCSI target with a portal. */
  createTarget(spec: TargetSpec): Promise<TargetRef>;
  /** LUN numbers already used on a target. */
  usedLuns(target: TargetRef): Promise<number[]>;
  /** Link the backstore as `lun` of the target. */
  createLun(target: TargetRef, backstore: BackstoreRef, lun: number): Promise<LunRef>;
  /** Wait for the SCSI disk of a loopback LUN. */
  waitForDisk(lun: LunRef): Promise<DiskRef>;
  /** Make `path` a block node with the disk's numbers (or a symlink to it); creates the directory. */
  makeNode(path: string, disk: DiskRef, kind: NodeKind): Promise<NodeRef>;

  removeNode(node: NodeRef): Promise<void>;
  removeLun(lun: LunRef): Promise<void>;
  removeTarget(target: TargetRef): Promise<void>;
  /** Remove the backstore, then its HBA directory when empty. */
  removeBackstore(backstore: BackstoreRef): Promise<void>;
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
}

export interface BackstoreRef {
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
  | { readonly type: 'iscsi'; readonly iqn: string; readonly portal: string };

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
}

export interface NodeRef {
  readonly path: string;
  /** Directories makeNode created (removed again when empty), innermost last. */
  readonly createdDirs: readonly string[];
}
