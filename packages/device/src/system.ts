import * as fsp from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  AlreadyExistsError,
  type FoundUserBackstore,
  type HostFs,
  type IscsiTargetLun,
  type LoopbackLun,
  type Roots,
  TargetManager,
  type UserBackstore,
} from '@tcmu/configfs';
import { mknod, TcmuRing } from '@tcmu/ring';
import type { IscsiInitiator } from './options.js';
import type {
  DevicePlatform,
  DiskRef,
  NodeKind,
  NodeRef,
  RingOpenOptions,
  TargetRef,
  UioRef,
} from './platform.js';

export interface SystemPlatformOptions {
  /** configfs/sysfs access (default: the real filesystem); tests pass @tcmu/configfs's FakeKernel. */
  readonly fs?: HostFs;
  readonly roots?: Partial<Roots>;
  /** How the ring is opened (default TcmuRing.open on the UIO device); tests map it to a simulator. */
  readonly openRing?: (uio: UioRef, options: RingOpenOptions) => TcmuRing;
  /** Wait for the UIO device after enable (default 10 s). */
  readonly uioTimeoutMs?: number;
  /** Wait for the SCSI disk after linking the LUN (default 30 s: the scan is slow under emulation). */
  readonly diskTimeoutMs?: number;
  /** Owner recorded in ownership markers (default process.pid); tests play other processes with it. */
  readonly ownerPid?: number;
}

/** The kernel's fixed TCMU queue depth (tcmu_configure_device sets hw_queue_depth = 128). */
const TCMU_HW_QUEUE_DEPTH = 128;
const LOOPBACK_TPGT = 1;
const ISCSI_TPGT = 1;

interface IscsiTargetHandle {
  readonly iqn: string;
  readonly portal: string;
  readonly initiators: readonly IscsiInitiator[] | undefined;
}

/**
 * The real platform: @tcmu/configfs's TargetManager for LIO objects, the
 * ring addon for the ring and mknod, node:fs for the device node.
 */
export function systemPlatform(options: SystemPlatformOptions = {}): DevicePlatform {
  const manager = new TargetManager({
    ...(options.fs ? { fs: options.fs } : {}),
    ...(options.roots ? { roots: options.roots } : {}),
    ...(options.ownerPid !== undefined ? { ownerPid: options.ownerPid } : {}),
  });
  const fs = manager.fs;
  const uioTimeoutMs = options.uioTimeoutMs ?? 10_000;
  const diskTimeoutMs = options.diskTimeoutMs ?? 30_000;
  const openRing =
    options.openRing ??
    ((uio: UioRef, ring: RingOpenOptions) =>
      TcmuRing.open({ uioPath: uio.path, mapSize: uio.mapSize, ...ring }));

  const tpgOf = (target: TargetRef) =>
    `${target.path}/tpgt_${target.type === 'loopback' ? LOOPBACK_TPGT : ISCSI_TPGT}`;
  /** What removeIscsiLun takes: LUN `lun` of the target, whether exportIscsi or addIscsiLun made it. */
  const iscsiLun = (target: TargetRef, lun: number): IscsiTargetLun => {
    const tpgPath = tpgOf(target);
    return {
      kind: 'iscsi-lun',
      iqn: target.wwn,
      tpgt: ISCSI_TPGT,
      lun,
      tpgPath,
      path: `${tpgPath}/lun/lun_${lun}`,
    };
  };

  return {
    async createBackstore(spec) {
      const backstore = await manager.createUserBackstore({
        name: spec.name,
        size: spec.sizeBytes,
        blockSize: spec.blockSize,
        serial: spec.serial,
        hwMaxSectors: spec.hwMaxSectors,
        // TMR entries in the ring: ABORT TASK and LUN RESET abort the handlers' signals.
        // cmd_time_out only before the first export (tcmu_cmd_time_out_store).
        attributes: { tmr_notification: 1, cmd_time_out: spec.commandTimeoutS },
        note: spec.note,
        ...(spec.hba !== undefined ? { hba: spec.hba } : {}),
        ...(spec.maxDataAreaMb !== undefined ? { maxDataAreaMb: spec.maxDataAreaMb } : {}),
      });
      return { name: backstore.name, hba: backstore.hba, path: backstore.path, handle: backstore };
    },

    async findBackstore(name) {
      const found = await manager.findUserBackstore(name);
      if (found === undefined) return undefined;
      const { backstore } = found;
      const loopback = new Map<string, TargetRef>();
      const luns = found.luns.map((lun) => {
        let target = loopback.get(lun.wwn);
        if (target === undefined) {
          target = {
            type: 'loopback',
            wwn: lun.wwn,
            path: `${manager.targetRoot}/loopback/${lun.wwn}`,
            handle: lun.nexus,
          };
          loopback.set(lun.wwn, target);
        }
        return { target, lun: lun.lun, handle: lun };
      });
      return {
        ref: { name: backstore.name, hba: backstore.hba, path: backstore.path, handle: { found, backstore } },
        sizeBytes: backstore.size,
        blockSize: backstore.blockSize,
        serial: backstore.serial,
        ours: found.tagged,
        ownerPid: found.owner?.pid,
        ownerAlive: found.ownerAlive,
        ownedByUs: found.ownedByUs,
        note: found.owner?.note ?? {},
        luns,
      };
    },

    async adoptBackstore(found, note) {
      const { found: raw, backstore } = found.ref.handle as {
        found: FoundUserBackstore;
        backstore: UserBackstore;
      };
      await manager.adoptUserBackstore(raw, note);
      // tcmu-runner's reopen order (libtcmu device_add with reopen): block, reset, map, unblock.
      await manager.blockAndResetRing(backstore, 1);
      return { name: backstore.name, hba: backstore.hba, path: backstore.path, handle: backstore };
    },

    async resetRing(backstore) {
      await manager.blockAndResetRing(backstore.handle as UserBackstore, 1);
    },

    async unblockBackstore(backstore) {
      await manager.writeUserAction(backstore.handle as UserBackstore, 'block_dev', 0);
    },

    adoptNode,

    async findUio(backstore) {
      const uio = await manager.findUio(backstore.handle as UserBackstore, { timeoutMs: uioTimeoutMs });
      return { path: uio.devPath, mapSize: uio.mapSize };
    },

    openRing,

    async freeKeptBuffer(backstore, id) {
      await fs.writeFile(`${backstore.path}/action/free_kept_buf`, String(id));
    },

    async setQueueDepth(backstore, depth) {
      // Writable after enable and before the first export, at most hw_queue_depth.
      // Kernels whose TCMU devices have only passthrough attributes (6.1) lack it.
      const attrib = `${backstore.path}/attrib`;
      if (!(await fs.exists(`${attrib}/queue_depth`))) return undefined;
      const hw = Number((await fs.readFile(`${attrib}/hw_queue_depth`).catch(() => '')).trim());
      const limit = Number.isSafeInteger(hw) && hw > 0 ? hw : TCMU_HW_QUEUE_DEPTH;
      const wanted = Math.min(depth, limit);
      try {
        await fs.writeFile(`${attrib}/queue_depth`, String(wanted));
        return wanted;
      } catch {
        return undefined;
      }
    },

    async createTarget(spec) {
      // The TargetManager creates a target with its first LUN (and a loopback
      // target goes with its last one), so here only the name is fixed.
      if (spec.type === 'loopback') {
        return {
          type: 'loopback',
          wwn: spec.wwn,
          path: `${manager.targetRoot}/loopback/${spec.wwn}`,
          handle: spec.nexusWwn,
        };
      }
      const handle: IscsiTargetHandle = { iqn: spec.iqn, portal: spec.portal, initiators: spec.initiators };
      return { type: 'iscsi', wwn: spec.iqn, path: `${manager.targetRoot}/iscsi/${spec.iqn}`, handle };
    },

    async usedLuns(target) {
      const entries = await fs.readdir(`${tpgOf(target)}/lun`).catch(() => []);
      const used: number[] = [];
      for (const entry of entries) {
        const match = /^lun_(\d+)$/.exec(entry.name);
        if (match) used.push(Number(match[1]));
      }
      return used;
    },

    async createLun(target, backstore, lun) {
      const ref = backstore.handle as UserBackstore;
      if (target.type === 'loopback') {
        const created = await manager.createLoopbackLun({
          backstore: ref,
          wwn: target.wwn,
          tpgt: LOOPBACK_TPGT,
          lun,
          nexus: target.handle as string,
        });
        return { target, lun, handle: created };
      }
      const { iqn, portal, initiators } = target.handle as IscsiTargetHandle;
      // Several devices of this process behind one IQN: the first exports the target (portal,
      // ACLs, CHAP); the others add their LUN to it, mapped for the initiators it lists.
      const join = () => manager.addIscsiLun({ iqn, tpgt: ISCSI_TPGT, backstore: ref, lun });
      if (await fs.exists(target.path)) return { target, lun, handle: await join() };
      try {
        const created = await manager.exportIscsi({
          iqn,
          tpgt: ISCSI_TPGT,
          portals: [portal],
          luns: [{ backstore: ref, lun }],
          // ACLs turn demo mode off: only the listed initiators log in, with CHAP when they have it.
          ...(initiators === undefined ? {} : { access: { mode: 'acl', initiators } }),
        });
        return { target, lun, handle: created };
      } catch (error) {
        // Another device of ours exported it in between.
        if (error instanceof AlreadyExistsError && (await fs.exists(target.path)))
          return { target, lun, handle: await join() };
        throw error;
      }
    },

    async waitForDisk(lun) {
      const disk = await manager.waitForDisk(lun.handle as LoopbackLun, { timeoutMs: diskTimeoutMs });
      return {
        name: disk.name,
        devPath: disk.devPath,
        major: disk.major,
        minor: disk.minor,
        hctl: disk.hctl,
      };
    },

    async resizeBackstore(backstore, sizeBytes) {
      try {
        await fs.writeFile(`${backstore.path}/attrib/dev_size`, String(sizeBytes));
      } catch (error) {
        // ESRCH: nobody listens for TCMU_CMD_RECONFIG_DEVICE (no tcmu-runner), and the kernel kept
        // the old size. `dev_size=` on control sets the same udev->dev_size without the event.
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
        await fs.writeFile(`${backstore.path}/control`, `dev_size=${sizeBytes}`);
      }
    },

    async rescanDisk(disk) {
      if (disk.hctl !== undefined)
        await fs.writeFile(`${manager.roots.sys}/bus/scsi/devices/${disk.hctl}/rescan`, '1');
    },

    makeNode(path, disk, kind) {
      return makeNode(path, disk, kind);
    },

    removeNode,

    async removeLun(lun) {
      if (lun.target.type === 'loopback') await manager.removeLun(lun.handle as LoopbackLun);
      else await manager.removeIscsiLun(iscsiLun(lun.target, lun.lun));
    },

    async removeTarget(target) {
      // A target may be shared (the same WWN or IQN given to several devices): it goes only
      // with its last LUN.
      if ((await this.usedLuns(target)).length > 0) return;
      await manager.removeTarget(target.type, target.wwn);
    },

    async removeBackstore(backstore) {
      await manager.removeBackstore(backstore.handle as UserBackstore);
    },
  } satisfies DevicePlatform;
}

let shared: DevicePlatform | undefined;

/**
 * The process-wide real platform: one TargetManager, so concurrent
 * openDevice() calls are serialized where they pick free HBA numbers.
 */
export function defaultPlatform(): DevicePlatform {
  shared ??= systemPlatform();
  return shared;
}

/** mkdir -p that reports which directories it made (so close() removes exactly those). */
async function makeDirs(dir: string): Promise<string[]> {
  const missing: string[] = [];
  let at = dir;
  while (!(await exists(at))) {
    missing.unshift(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  const made: string[] = [];
  for (const path of missing) {
    try {
      await fsp.mkdir(path);
      made.push(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  return made;
}

async function exists(path: string): Promise<boolean> {
  try {
    await fsp.lstat(path);
    return true;
  } catch {
    return false;
  }
}

export async function makeNode(path: string, disk: DiskRef, kind: NodeKind): Promise<NodeRef> {
  const createdDirs = await makeDirs(dirname(path));
  try {
    if (await exists(path)) {
      throw Object.assign(new Error(`${path} already exists (another device, or a leftover: remove it)`), {
        code: 'EEXIST',
        path,
      });
    }
    if (kind === 'symlink') await fsp.symlink(disk.devPath, path);
    else {
      mknod(path, disk.major, disk.minor, { type: 'block', permissions: 0o600 });
      // Explicitly: mknod's mode is filtered by the umask, which is not ours to trust.
      await fsp.chmod(path, 0o600);
    }
  } catch (error) {
    await removeDirs(createdDirs);
    throw error;
  }
  return { path, createdDirs };
}

/** See DevicePlatform.adoptNode. */
export async function adoptNode(
  path: string,
  disk: DiskRef,
  kind: NodeKind,
  ours: boolean,
): Promise<NodeRef | undefined> {
  let stat: Awaited<ReturnType<typeof fsp.lstat>>;
  try {
    stat = await fsp.lstat(path);
  } catch {
    return undefined;
  }
  const fits =
    kind === 'block'
      ? stat.isBlockDevice() &&
        deviceNumbers(stat.rdev).major === disk.major &&
        deviceNumbers(stat.rdev).minor === disk.minor
      : stat.isSymbolicLink() && (await fsp.readlink(path)) === disk.devPath;
  // Directories stay as they are: they were made by the process that made the node.
  if (fits) return { path, createdDirs: [] };
  if (!ours) {
    throw Object.assign(new Error(`${path} already exists and is not this disk's node: remove it`), {
      code: 'EEXIST',
      path,
    });
  }
  await fsp.unlink(path); // ours, stale: its numbers may now name another disk
  return undefined;
}

/** Linux's dev_t split (new_decode_dev / MAJOR() / MINOR() for 32-bit values). */
function deviceNumbers(rdev: number): { major: number; minor: number } {
  return { major: (rdev >>> 8) & 0xfff, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}

export async function removeNode(node: NodeRef): Promise<void> {
  try {
    await fsp.unlink(node.path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await removeDirs(node.createdDirs);
}

/** Removes directories we made, innermost first, leaving any that are not empty. */
async function removeDirs(dirs: readonly string[]): Promise<void> {
  for (const dir of [...dirs].reverse()) {
    try {
      await fsp.rmdir(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
  }
}
