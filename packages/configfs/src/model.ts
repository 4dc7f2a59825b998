import type { OwnerRecord } from './owner.js';
import type { Attributes, BackstoreInfo, BackstorePlugin } from './control.js';
import type { Portal } from './validate.js';

export type { BackstorePlugin, Portal };

/** Identifies a backstore: `core/<plugin>_<hba>/<name>`. Plain data, safe to persist. */
export interface BackstoreRef {
  readonly plugin: BackstorePlugin;
  readonly hba: number;
  readonly name: string;
}

export interface UserBackstore extends BackstoreRef {
  readonly kind: 'backstore';
  readonly plugin: 'user';
  /** Absolute configfs path of the backstore directory. */
  readonly path: string;
  readonly devConfig: string;
  readonly size: number;
  readonly blockSize: number;
  readonly serial: string | undefined;
}

export interface FileioBackstore extends BackstoreRef {
  readonly kind: 'backstore';
  readonly plugin: 'fileio';
  readonly path: string;
  readonly file: string;
  readonly size: number;
  readonly blockSize: number;
  readonly buffered: boolean;
  readonly serial: string | undefined;
}

export type Backstore = UserBackstore | FileioBackstore;

/** One LUN of a tcm_loop target: becomes a local SCSI disk once linked. */
export interface LoopbackLun {
  readonly kind: 'loopback-lun';
  readonly wwn: string;
  readonly tpgt: number;
  readonly lun: number;
  readonly alias: string;
  readonly nexus: string;
  readonly backstore: BackstoreRef;
  /** Absolute configfs path of the TPG (`.../loopback/<wwn>/tpgt_<n>`). */
  readonly tpgPath: string;
  /** Absolute configfs path of the LUN directory. */
  readonly path: string;
}

export interface IscsiLun {
  readonly lun: number;
  readonly alias: string;
  readonly backstore: BackstoreRef;
}

export interface IscsiTarget {
  readonly kind: 'iscsi-target';
  readonly iqn: string;
  readonly tpgt: number;
  readonly path: string;
  readonly tpgPath: string;
  readonly portals: readonly Portal[];
  readonly luns: readonly IscsiLun[];
}

/** One LUN of an iSCSI target: what `addIscsiLun()` made, what `removeIscsiLun()` takes. */
export interface IscsiTargetLun {
  readonly kind: 'iscsi-lun';
  readonly iqn: string;
  readonly tpgt: number;
  readonly lun: number;
  /** Absolute configfs path of the TPG (`.../iscsi/<iqn>/tpgt_<n>`). */
  readonly tpgPath: string;
  /** Absolute configfs path of the LUN directory. */
  readonly path: string;
}

export interface IscsiLunOptions {
  /** An iSCSI target this process exported. */
  readonly iqn: string;
  /** Default 1. */
  readonly tpgt?: number;
  readonly backstore: BackstoreRef;
  readonly lun: number;
  /** Name of the LUN's symlink; default: the backstore name. */
  readonly alias?: string;
}

/** Anything `teardown()` accepts. */
export type Handle = Backstore | LoopbackLun | IscsiTarget | IscsiTargetLun;

export interface UserBackstoreOptions {
  /** Directory name; also the default `dev_config` (`tcmu-node/<name>`). */
  readonly name: string;
  /** Bytes; a positive multiple of `blockSize`. */
  readonly size: number;
  /** Logical block size (`hw_block_size`), default 512. */
  readonly blockSize?: number;
  /** HBA index (`user_<hba>`); default: the lowest index no HBA directory uses. */
  readonly hba?: number;
  /** Handler configuration `<subtype>/<cfgstring>`; default `tcmu-node/<name>`, which marks it as ours. */
  readonly devConfig?: string;
  readonly maxDataAreaMb?: number;
  readonly hwMaxSectors?: number;
  readonly dataPagesPerBlk?: number;
  readonly cmdRingSizeMb?: number;
  /** Default -1: the kernel never waits for a netlink reply, so `enable` cannot hang. */
  readonly nlReplySupported?: number;
  /** T10 unit serial (`wwn/vpd_unit_serial`); default: a random UUID. */
  readonly serial?: string;
  /** `attrib/*` values (see WRITABLE_ATTRIBUTES.user), written before `enable`. */
  readonly attributes?: Attributes;
  /** Kept in the ownership marker (e.g. what the backstore serves), for a process that adopts it later. */
  readonly note?: Readonly<Record<string, string>>;
}

export interface FileioBackstoreOptions {
  readonly name: string;
  /** Absolute path of the backing file (the kernel creates it if missing). */
  readonly file: string;
  readonly size: number;
  /** Logical block size (`attrib/block_size`), default 512. */
  readonly blockSize?: number;
  /** Page-cache I/O with an emulated write cache (`fd_buffered_io=1`); default false (O_DSYNC). */
  readonly buffered?: boolean;
  readonly hba?: number;
  readonly serial?: string;
  /** `attrib/*` values (see WRITABLE_ATTRIBUTES.fileio), written after `enable`. */
  readonly attributes?: Attributes;
}

export interface LoopbackLunOptions {
  readonly backstore: BackstoreRef;
  /** Target WWN `naa.<16 hex>`; default: a fresh random one. An existing target of ours is reused. */
  readonly wwn?: string;
  /** Default 1. */
  readonly tpgt?: number;
  /** Default 0. */
  readonly lun?: number;
  /** Initiator WWN of the I_T nexus; default: derived from the target WWN. */
  readonly nexus?: string;
  /** Name of the LUN's symlink; default: the backstore name. */
  readonly alias?: string;
}

export interface ChapCredentials {
  readonly userid: string;
  readonly password: string;
  /** Mutual CHAP: what the target answers the initiator's challenge with (both or neither). */
  readonly mutualUserid?: string;
  readonly mutualPassword?: string;
}

export interface MappedLunOptions {
  /** LUN number the initiator sees. */
  readonly mappedLun: number;
  /** LUN of the TPG it maps to. */
  readonly tpgLun: number;
  readonly writeProtect?: boolean;
}

export interface InitiatorAclOptions {
  readonly iqn: string;
  readonly chap?: ChapCredentials;
  /** Default: every TPG LUN under its own number. */
  readonly mappedLuns?: readonly MappedLunOptions[];
}

export type IscsiAccess =
  | { readonly mode: 'demo'; readonly writeProtect?: boolean }
  | { readonly mode: 'acl'; readonly initiators: readonly InitiatorAclOptions[] };

export interface IscsiExportOptions {
  /** Default: `iqn.2003-01.org.linux-iscsi.tcmu-node:sn.<12 hex>`. */
  readonly iqn?: string;
  readonly tpgt?: number;
  /** At least one; `"127.0.0.1:3260"`, `"[::1]:3260"` or `{ ip, port }`. */
  readonly portals: ReadonlyArray<string | { readonly ip: string; readonly port?: number }>;
  readonly luns: ReadonlyArray<{
    readonly backstore: BackstoreRef;
    readonly lun?: number;
    readonly alias?: string;
  }>;
  /** Default: demo mode (any initiator, no CHAP, writable). */
  readonly access?: IscsiAccess;
  /** Default true. */
  readonly enable?: boolean;
}

export interface UioDevice {
  readonly index: number;
  /** `tcm-user/<hba>/<name>/<dev_config>`. */
  readonly name: string;
  /** `/dev/uio<index>`. */
  readonly devPath: string;
  /** Bytes to mmap (`maps/map0/size`). */
  readonly mapSize: number;
  readonly major: number;
  readonly minor: number;
  readonly sysPath: string;
}

export interface Disk {
  /** Kernel name, e.g. `sda`. */
  readonly name: string;
  readonly devPath: string;
  readonly major: number;
  readonly minor: number;
  /** `<host>:0:<tpgt>:<lun>`. */
  readonly hctl: string;
  readonly sizeBytes: number;
}

export interface WaitOptions {
  /** Default 10 000 ms. */
  readonly timeoutMs?: number;
  /** Poll interval, default 50 ms. */
  readonly intervalMs?: number;
}

export interface Ownership {
  /** Created by node-tcmu (ownership marker, or a `tcmu-node/` dev_config). */
  readonly owned: boolean;
  readonly ownerPid: number | undefined;
  /** Ours and no live owner process: `cleanup()` removes it. */
  readonly stale: boolean;
}

export interface BackstoreEntry extends BackstoreRef, Ownership {
  readonly path: string;
  readonly enabled: boolean;
  readonly info: BackstoreInfo;
  readonly serial: string | undefined;
}

export interface LunEntry {
  readonly index: number;
  readonly alias: string | undefined;
  /** The linked backstore, or undefined when the link is missing (partial state). */
  readonly backstore: BackstoreRef | undefined;
}

export interface MappedLunEntry {
  readonly index: number;
  readonly tpgLun: number | undefined;
  readonly writeProtect: boolean;
}

export interface AclEntry {
  readonly iqn: string;
  readonly chap: ChapCredentials | undefined;
  readonly mappedLuns: readonly MappedLunEntry[];
}

export interface TpgEntry {
  readonly tag: number;
  readonly path: string;
  readonly enabled: boolean | undefined;
  readonly nexus: string | undefined;
  readonly address: string | undefined;
  readonly luns: readonly LunEntry[];
  readonly portals: readonly Portal[];
  readonly acls: readonly AclEntry[];
  readonly attributes: Readonly<Record<string, number>>;
}

export interface TargetEntry extends Ownership {
  readonly fabric: string;
  readonly wwn: string;
  readonly path: string;
  readonly tpgs: readonly TpgEntry[];
}

export interface Inventory {
  readonly backstores: readonly BackstoreEntry[];
  readonly targets: readonly TargetEntry[];
}

export interface CleanupReport {
  /** configfs paths (relative to `<configfs>/target`) removed. */
  readonly removed: readonly string[];
  readonly skipped: ReadonlyArray<{ readonly path: string; readonly reason: string }>;
}

/** A user backstore found by name (`findUserBackstore`): what a restarted process needs to adopt it. */
export interface FoundUserBackstore {
  readonly backstore: UserBackstore;
  /** Its ownership marker: pid, start time and the note its owner left; undefined without one. */
  readonly owner: OwnerRecord | undefined;
  /** The owner process is alive (this process included): in use unless that owner let it go. */
  readonly ownerAlive: boolean;
  /** The owner is this registry's process (OwnerRegistry.isOwn). */
  readonly ownedByUs: boolean;
  /** Tagged `tcmu-node/` (made by this library), so ours to adopt once its owner is gone. */
  readonly tagged: boolean;
  /** The loopback LUNs that export it. */
  readonly luns: readonly LoopbackLun[];
}
