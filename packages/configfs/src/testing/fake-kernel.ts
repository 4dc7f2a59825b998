import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { type DirEntry, type HostFs, NodeHostFs, type Roots } from '../host-fs.js';

/** The file system calls FakeKernel.failNext can make fail. */
export type FsOperation =
  | 'readFile'
  | 'writeFile'
  | 'createExclusive'
  | 'mkdir'
  | 'rmdir'
  | 'symlink'
  | 'unlink'
  | 'readdir';

interface FailureRule {
  readonly op: FsOperation;
  readonly path: string | RegExp;
  readonly code: string;
  remaining: number;
}

interface BackstoreState {
  readonly plugin: string;
  readonly hba: string;
  readonly name: string;
  readonly control: Map<string, string>;
  enabled: boolean;
  uio: number | undefined;
  serial: string;
}

interface TpgState {
  readonly fabric: string;
  readonly wwn: string;
  readonly tag: number;
  readonly host: number;
  nexus: string | undefined;
}

interface DiskState {
  readonly hctl: string;
  readonly name: string;
  readonly lunDir: string;
  readonly backstore: BackstoreState;
}

function fail(code: string, message: string): never {
  throw Object.assign(new Error(`${code}: ${message}`), { code });
}

const USER_ATTRIBUTES: Record<string, string> = {
  cmd_time_out: '30',
  qfull_time_out: '-1',
  emulate_write_cache: '0',
  tmr_notification: '0',
  emulate_pr: '1',
  enforce_pr_isids: '1',
  force_pr_aptpl: '0',
  hw_block_size: '0',
  hw_max_sectors: '0',
  hw_queue_depth: '0',
  max_data_area_mb: '1024',
  data_pages_per_blk: '1',
  cmd_ring_size_mb: '8',
  nl_reply_supported: '0',
  dev_config: '',
  dev_size: '0',
};

const FILEIO_ATTRIBUTES: Record<string, string> = {
  block_size: '512',
  hw_block_size: '512',
  emulate_write_cache: '0',
  emulate_fua_write: '1',
  emulate_tpu: '0',
  emulate_tpws: '0',
  emulate_caw: '1',
  emulate_3pc: '1',
  emulate_pr: '1',
  emulate_tas: '1',
  emulate_ua_intlck_ctrl: '0',
  enforce_pr_isids: '1',
  force_pr_aptpl: '0',
  is_nonrot: '0',
  optimal_sectors: '16384',
  queue_depth: '128',
  max_unmap_lba_count: '0',
  max_unmap_block_desc_count: '0',
  unmap_granularity: '0',
  unmap_granularity_alignment: '0',
  max_write_same_len: '4096',
  unmap_zeroes_data: '0',
};

const MiB = 1024 * 1024;

/**
 * A temporary directory tree that plays the kernel's part for `TargetManager`:
 * it implements `HostFs` and reproduces the configfs/sysfs side effects the
 * library relies on (attribute files on mkdir, UIO devices on `enable`, the TPG
 * `address`, SCSI disks when a loopback LUN is linked with a nexus, EPERM on
 * `nexus=NULL` while LUNs exist, EBUSY/ENOTEMPTY on rmdir of used dirs...).
 * `failNext()` makes a chosen operation fail, to exercise rollback.
 */
export class FakeKernel implements HostFs {
  readonly roots: Roots;
  private readonly real = new NodeHostFs();
  private readonly userMade = new Set<string>();
  private readonly backstores = new Map<string, BackstoreState>();
  private readonly tpgs = new Map<string, TpgState>();
  private readonly disks = new Map<string, DiskState>();
  /** The disks (H:C:T:L) whose `rescan` was written, in order. */
  readonly rescans: string[] = [];
  /**
   * A process listens on TCM-USER's netlink config group (tcmu-runner): writing attrib/dev_size
   * of an enabled device then succeeds; without one it fails with ESRCH, as in the kernel.
   */
  netlinkListener = false;
  private readonly failures: FailureRule[] = [];
  private nextHost = 0;
  private nextDisk = 0;
  /** Every successful mutating operation, in order: `mkdir <path>`, `write <path>=<data>`... */
  readonly journal: string[] = [];
  /** Writes to user backstores' action/* files, in order: `<name> reset_ring=1`... */
  readonly actions: string[] = [];
  #onAction: ((uioPath: string, action: string, value: string) => void) | undefined;

  /** This kernel's `/lib/modules/<release>`, with a modules.dep listing the LIO modules. */
  readonly modulesDir: string;

  private constructor(readonly base: string) {
    this.modulesDir = `${base}/lib/modules/fake`;
    this.roots = {
      configfs: `${base}/sys/kernel/config`,
      sys: `${base}/sys`,
      dev: `${base}/dev`,
      proc: `${base}/proc`,
      run: `${base}/run/tcmu-node`,
    };
  }

  /** Builds a fresh tree with LIO loaded, configfs mounted and this process in /proc. */
  static async create(): Promise<FakeKernel> {
    const base = await fsp.mkdtemp(join(tmpdir(), 'fake-kernel-'));
    const kernel = new FakeKernel(await fsp.realpath(base));
    await kernel.init();
    return kernel;
  }

  private async init(): Promise<void> {
    const { configfs, sys, dev, proc } = this.roots;
    for (const dir of [
      `${configfs}/target/core/alua`,
      `${sys}/class/uio`,
      `${sys}/bus/scsi/devices`,
      dev,
      `${this.base}/run`,
      `${this.base}/sbin`,
    ]) {
      await fsp.mkdir(dir, { recursive: true });
    }
    await fsp.writeFile(`${configfs}/target/version`, 'Target Engine Core ConfigFS Infrastructure v5.0\n');
    const modules = [
      'configfs',
      'target_core_mod',
      'target_core_user',
      'tcm_loop',
      'target_core_file',
      'iscsi_target_mod',
      'uio',
    ];
    for (const module of modules) {
      await fsp.mkdir(`${sys}/module/${module}`, { recursive: true });
    }
    await fsp.writeFile(`${this.base}/sbin/modprobe`, '');
    // Loaded, and loadable again after a test unloads one (removes its /sys/module entry).
    await fsp.mkdir(this.modulesDir, { recursive: true });
    await fsp.writeFile(
      `${this.modulesDir}/modules.dep`,
      modules.map((module) => `kernel/${module}.ko:\n`).join(''),
    );
    await fsp.mkdir(proc, { recursive: true });
    await fsp.writeFile(`${proc}/mounts`, `configfs ${configfs} configfs rw,relatime 0 0\n`);
    await this.spawnProcess(process.pid);
  }

  /** Removes the whole tree. */
  async dispose(): Promise<void> {
    await fsp.rm(this.base, { recursive: true, force: true });
  }

  /** Makes `/proc/<pid>/stat` exist (a live process), with a given start time. */
  async spawnProcess(pid: number, startTime = 1000 + pid): Promise<void> {
    await fsp.mkdir(`${this.roots.proc}/${pid}`, { recursive: true });
    const fields = ['S', ...Array.from({ length: 18 }, () => '0'), String(startTime), '0'];
    await fsp.writeFile(`${this.roots.proc}/${pid}/stat`, `${pid} (node worker) ${fields.join(' ')}\n`);
  }

  async killProcess(pid: number): Promise<void> {
    await fsp.rm(`${this.roots.proc}/${pid}`, { recursive: true, force: true });
  }

  /**
   * The next `times` matching operations fail with `code` (default EIO) before
   * touching anything. `path` matches exactly, by suffix when it starts with
   * `*`, or as a RegExp.
   */
  failNext(op: FsOperation, path: string | RegExp, code = 'EIO', times = 1): void {
    this.failures.push({ op, path, code, remaining: times });
  }

  /** Relative listing of every path under `<configfs>/target` (for before/after comparisons). */
  async snapshot(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, rel: string) => {
      for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
        const childRel = rel ? `${rel}/${entry.name}` : entry.name;
        out.push(
          entry.isSymbolicLink() ? `${childRel} -> ${await fsp.readlink(join(dir, entry.name))}` : childRel,
        );
        if (entry.isDirectory()) await walk(join(dir, entry.name), childRel);
      }
    };
    await walk(`${this.roots.configfs}/target`, '');
    await walk(`${this.roots.sys}/class/uio`, 'uio:');
    await walk(`${this.roots.sys}/bus/scsi/devices`, 'scsi:');
    return out.sort();
  }

  private checkFailure(op: FsOperation, path: string): void {
    for (const rule of this.failures) {
      if (rule.op !== op || rule.remaining <= 0) continue;
      const hit =
        typeof rule.path === 'string'
          ? rule.path.startsWith('*')
            ? path.endsWith(rule.path.slice(1))
            : rule.path === path
          : rule.path.test(path);
      if (hit) {
        rule.remaining--;
        fail(rule.code, `injected failure of ${op} ${path}`);
      }
    }
  }

  /** Path relative to `<configfs>/target`, split, or undefined when outside. */
  private targetParts(path: string): string[] | undefined {
    const root = `${this.roots.configfs}/target/`;
    return path.startsWith(root) ? path.slice(root.length).split('/') : undefined;
  }

  // ---------------------------------------------------------------- HostFs

  async readFile(path: string): Promise<string> {
    this.checkFailure('readFile', path);
    const parts = this.targetParts(path);
    if (parts) {
      const file = parts.at(-1);
      const bs = this.backstores.get(dirname(path));
      if (bs && file === 'info') return this.renderInfo(bs);
      if (bs && file === 'control') fail('EACCES', 'control is write-only');
      const serialOwner = this.backstores.get(dirname(dirname(path)));
      if (serialOwner && parts.at(-2) === 'wwn' && file === 'vpd_unit_serial') {
        return `T10 VPD Unit Serial Number: ${serialOwner.serial}\n`;
      }
      const tpg = this.tpgs.get(dirname(path));
      if (tpg && file === 'nexus') {
        if (!tpg.nexus) fail('ENODEV', 'no I_T nexus');
        return `${tpg.nexus}\n`;
      }
    }
    return this.real.readFile(path);
  }

  async writeFile(path: string, data: string): Promise<void> {
    this.checkFailure('writeFile', path);
    const parts = this.targetParts(path);
    if (parts) await this.kernelWrite(path, parts, data);
    else if (!(await this.rescan(path))) await this.real.writeFile(path, data);
    this.journal.push(`write ${path}=${data}`);
  }

  async createExclusive(path: string, data: string): Promise<void> {
    this.checkFailure('createExclusive', path);
    if (this.targetParts(path)) fail('EPERM', `${path}: configfs holds no regular files of ours`);
    await this.real.createExclusive(path, data);
    this.journal.push(`create ${path}=${data}`);
  }

  async mkdir(path: string): Promise<void> {
    this.checkFailure('mkdir', path);
    const parts = this.targetParts(path);
    if (parts) await this.kernelMkdir(path, parts);
    else await this.real.mkdir(path);
    this.journal.push(`mkdir ${path}`);
  }

  async rmdir(path: string): Promise<void> {
    this.checkFailure('rmdir', path);
    const parts = this.targetParts(path);
    if (parts) await this.kernelRmdir(path);
    else await this.real.rmdir(path);
    this.journal.push(`rmdir ${path}`);
  }

  async symlink(target: string, path: string): Promise<void> {
    this.checkFailure('symlink', path);
    const parts = this.targetParts(path);
    if (parts) await this.kernelSymlink(target, path, parts);
    else await this.real.symlink(target, path);
    this.journal.push(`symlink ${path} -> ${target}`);
  }

  async readlink(path: string): Promise<string> {
    return this.real.readlink(path);
  }

  async readdir(path: string): Promise<DirEntry[]> {
    this.checkFailure('readdir', path);
    return this.real.readdir(path);
  }

  async exists(path: string): Promise<boolean> {
    return this.real.exists(path);
  }

  async realpath(path: string): Promise<string> {
    return this.real.realpath(path);
  }

  async unlink(path: string): Promise<void> {
    this.checkFailure('unlink', path);
    const parts = this.targetParts(path);
    if (parts) {
      if (!this.userMade.has(path)) fail('EPERM', `${path} is not a user-made link`);
      await this.real.unlink(path);
      this.userMade.delete(path);
      this.removeDisksOf(dirname(path));
    } else {
      await this.real.unlink(path);
    }
    this.journal.push(`unlink ${path}`);
  }

  // ---------------------------------------------------------------- kernel side

  private async kernelMkdir(path: string, parts: string[]): Promise<void> {
    if (await this.real.exists(path)) fail('EEXIST', path);
    if (!(await this.real.exists(dirname(path)))) fail('ENOENT', dirname(path));
    const [top, second, third, fourth, fifth, sixth] = parts;
    const depth = parts.length;
    const defaults: Record<string, string> = {};
    const groups: string[] = [];
    if (top === 'core') {
      if (depth === 2) {
        const match = /^(user|fileio|iblock|rd_mcp|pscsi)_(\d+)$/.exec(second!);
        if (!match) fail('EINVAL', `unknown HBA ${second}`);
        defaults.hba_info = `HBA Index: ${match[2]} plugin: ${match[1]} version: v5.0\n`;
        defaults.hba_mode = '0\n';
      } else if (depth === 3) {
        const plugin = /^([a-z_]+)_\d+$/.exec(second ?? '')?.[1] ?? 'unknown';
        groups.push('action', 'alua', 'attrib', 'pr', 'statistics', 'wwn');
        Object.assign(defaults, {
          enable: '0\n',
          alias: '\n',
          udev_path: '\n',
          lba_map: '\n',
          alua_lu_gp: '\n',
        });
        this.backstores.set(path, {
          plugin,
          hba: second!.slice(plugin.length + 1),
          name: third!,
          control: new Map(),
          enabled: false,
          uio: undefined,
          serial: '',
        });
      } else {
        fail('EPERM', `cannot mkdir ${path}`);
      }
    } else if (depth === 1) {
      groups.push('discovery_auth');
      defaults.version = `${top} fabric\n`;
    } else if (depth === 2) {
      if (top === 'loopback' && !/^(naa|fc|iqn)\./.test(second!))
        fail('EINVAL', `bad loopback WWN ${second}`);
      if (top === 'iscsi' && !/^(iqn|naa|eui)\./.test(second!)) fail('EINVAL', `bad iSCSI name ${second}`);
      groups.push('fabric_statistics', 'param');
    } else if (depth === 3) {
      const match = /^tpgt_(\d+)$/.exec(third!);
      if (!match) fail('EINVAL', `bad TPG ${third}`);
      const tag = Number(match[1]);
      groups.push('acls', 'attrib', 'auth', 'lun', 'np', 'param');
      if (top === 'loopback') {
        if (tag < 1 || tag >= 32) fail('EINVAL', 'tpgt out of range');
        const host = this.hostOf(`${dirname(path)}`);
        defaults.address = `${host}:0:${tag}\n`;
        defaults.transport_status = 'online\n';
        defaults.nexus = '';
        this.tpgs.set(path, { fabric: top, wwn: second!, tag, host, nexus: undefined });
      } else {
        defaults.enable = '0\n';
        defaults.dynamic_sessions = '\n';
        this.tpgs.set(path, { fabric: top!, wwn: second!, tag, host: -1, nexus: undefined });
      }
    } else if (depth === 5 && fourth === 'lun') {
      if (!/^lun_\d+$/.test(fifth!)) fail('EINVAL', `bad LUN ${fifth}`);
      groups.push('statistics');
      Object.assign(defaults, { alua_tg_pt_gp: '\n', alua_tg_pt_offline: '0\n', alua_tg_pt_status: '0\n' });
    } else if (depth === 5 && fourth === 'np') {
      if (!/^(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:.]+\]):\d+$/i.test(fifth!)) fail('EINVAL', `bad portal ${fifth}`);
      Object.assign(defaults, { iser: '0\n', offload: '0\n' });
    } else if (depth === 5 && fourth === 'acls') {
      groups.push('attrib', 'auth', 'fabric_statistics', 'param');
      Object.assign(defaults, { cmdsn_depth: '64\n', info: '\n', tag: '\n' });
    } else if (depth === 6 && fourth === 'acls') {
      if (!/^lun_\d+$/.test(sixth!)) fail('EINVAL', `bad mapped LUN ${sixth}`);
      groups.push('statistics');
      defaults.write_protect = '0\n';
    } else {
      fail('EPERM', `cannot mkdir ${path}`);
    }
    await fsp.mkdir(path);
    this.userMade.add(path);
    for (const group of groups) await fsp.mkdir(`${path}/${group}`);
    for (const [file, value] of Object.entries(defaults)) await fsp.writeFile(`${path}/${file}`, value);
    const bs = this.backstores.get(path);
    if (bs) {
      const attributes = bs.plugin === 'user' ? USER_ATTRIBUTES : FILEIO_ATTRIBUTES;
      for (const [file, value] of Object.entries(attributes))
        await fsp.writeFile(`${path}/attrib/${file}`, `${value}\n`);
      await fsp.writeFile(`${path}/wwn/vpd_unit_serial`, '');
      await fsp.writeFile(`${path}/control`, '');
      await fsp.writeFile(`${path}/info`, '');
      if (bs.plugin === 'user') {
        for (const action of ['block_dev', 'reset_ring', 'free_kept_buf'])
          await fsp.writeFile(`${path}/action/${action}`, action === 'block_dev' ? '0\n' : '');
      }
    }
    if (depth === 3 && top !== 'core' && top !== 'loopback') {
      for (const [file, value] of Object.entries({
        authentication: '1',
        generate_node_acls: '0',
        cache_dynamic_acls: '0',
        demo_mode_write_protect: '1',
      })) {
        await fsp.writeFile(`${path}/attrib/${file}`, `${value}\n`);
      }
    }
    if (depth === 5 && fourth === 'acls') {
      for (const file of ['userid', 'password', 'userid_mutual', 'password_mutual']) {
        await fsp.writeFile(`${path}/auth/${file}`, '\n');
      }
    }
  }

  /** tcm_loop gives every WWN dir its own SCSI host (host numbers are never reused). */
  private hostOf(targetPath: string): number {
    for (const tpg of this.tpgs.values()) {
      if (`${this.roots.configfs}/target/${tpg.fabric}/${tpg.wwn}` === targetPath && tpg.host >= 0)
        return tpg.host;
    }
    return this.nextHost++;
  }

  private async kernelRmdir(path: string): Promise<void> {
    if (!(await this.real.exists(path))) fail('ENOENT', path);
    if (!this.userMade.has(path)) fail('EPERM', `${path} is a default group`);
    for (const made of this.userMade) {
      if (made.startsWith(`${path}/`)) fail('ENOTEMPTY', `${path} contains ${made}`);
    }
    const bs = this.backstores.get(path);
    if (bs) {
      for (const made of this.userMade) {
        if (made.includes('/lun/') && (await this.real.realpath(made).catch(() => '')) === path) {
          fail('EBUSY', `${path} is linked by ${made}`);
        }
      }
      if (bs.uio !== undefined) {
        await fsp.rm(`${this.roots.sys}/class/uio/uio${bs.uio}`, { recursive: true, force: true });
        await fsp.rm(`${this.roots.dev}/uio${bs.uio}`, { force: true });
      }
      this.backstores.delete(path);
    }
    this.tpgs.delete(path);
    await fsp.rm(path, { recursive: true, force: true });
    this.userMade.delete(path);
  }

  private async kernelWrite(path: string, parts: string[], data: string): Promise<void> {
    if (!(await this.real.exists(path))) fail('ENOENT', path);
    const file = basename(path);
    const bs = this.backstores.get(dirname(path));
    if (bs && file === 'control') {
      this.writeControl(bs, data);
      // control and attrib/dev_size set the same udev->dev_size.
      const size = bs.control.get('dev_size');
      if (bs.enabled && bs.plugin === 'user' && size !== undefined)
        await fsp.writeFile(`${dirname(path)}/attrib/dev_size`, `${size}\n`);
      return;
    }
    if (bs && file === 'enable') return this.enableBackstore(dirname(path), bs, data);
    if (bs && (file === 'info' || file === 'hba_info')) fail('EACCES', `${file} is read-only`);
    const serialOwner = this.backstores.get(dirname(dirname(path)));
    if (serialOwner && parts.at(-2) === 'wwn' && file === 'vpd_unit_serial') {
      if (data.length > 254) fail('EOVERFLOW', 'serial too long');
      serialOwner.serial = data.trim();
      return;
    }
    const actionOwner = this.backstores.get(dirname(dirname(path)));
    if (actionOwner && parts.at(-2) === 'action')
      return this.writeAction(path, actionOwner, file, data.trim());
    const attribOwner = this.backstores.get(dirname(dirname(path)));
    if (attribOwner?.plugin === 'user' && file === 'cmd_time_out' && parts.at(-2) === 'attrib') {
      // tcmu_cmd_time_out_store: refused while a LUN exports the device.
      if (await this.isExported(dirname(dirname(path)))) fail('EINVAL', 'cmd_time_out: device is exported');
    }
    if (attribOwner?.plugin === 'user' && file === 'dev_size' && parts.at(-2) === 'attrib') {
      if (!/^\d+\s*$/.test(data)) fail('EINVAL', 'dev_size: not a number');
      // tcmu_dev_size_store: RECONFIG over netlink first; genlmsg_multicast_allns gives ESRCH to nobody.
      if (attribOwner.enabled && !this.netlinkListener) fail('ESRCH', 'dev_size: no netlink listener');
      attribOwner.control.set('dev_size', data.trim());
    }
    if (attribOwner && parts.at(-2) === 'attrib') {
      if (!/^-?\d+\s*$/.test(data)) fail('EINVAL', `${file}: not a number`);
      await fsp.writeFile(path, `${data.trim()}\n`);
      return;
    }
    const tpg = this.tpgs.get(dirname(path));
    if (tpg && file === 'nexus') return this.writeNexus(dirname(path), tpg, data.trim());
    if (tpg && file === 'address') fail('EACCES', 'address is read-only');
    if (tpg && file === 'enable') {
      if (data.trim() !== '0' && data.trim() !== '1') fail('EINVAL', 'enable takes 0 or 1');
    }
    await fsp.writeFile(path, `${data.trim()}\n`);
  }

  /** Writes of target_core_user.c's action/* files (tcmu_block_dev_store, tcmu_reset_ring_store). */
  private async writeAction(path: string, bs: BackstoreState, file: string, value: string): Promise<void> {
    if (!bs.enabled) fail('EINVAL', `${file}: device not configured`);
    const allowed: Record<string, RegExp> = {
      block_dev: /^[01]$/,
      reset_ring: /^[12]$/,
      free_kept_buf: /^\d+$/,
    };
    const rule = allowed[file];
    if (!rule) fail('EACCES', `${file} is not writable`);
    if (!rule.test(value)) fail('EINVAL', `${file}: bad value ${value}`);
    if (file === 'block_dev') await fsp.writeFile(path, `${value}\n`);
    this.actions.push(`${bs.name} ${file}=${value}`);
    if (bs.uio !== undefined) this.#onAction?.(`${this.roots.dev}/uio${bs.uio}`, file, value);
  }

  /**
   * Called on each accepted action/* write with the backstore's UIO device path: a test
   * harness forwards block_dev and reset_ring to the ring simulator serving that device.
   */
  onAction(listener: (uioPath: string, action: string, value: string) => void): void {
    this.#onAction = listener;
  }

  private async isExported(backstorePath: string): Promise<boolean> {
    for (const made of this.userMade) {
      if (made.includes('/lun/') && (await this.real.realpath(made).catch(() => '')) === backstorePath)
        return true;
    }
    return false;
  }

  private writeControl(bs: BackstoreState, data: string): void {
    for (const token of data.split(/[,\n]/)) {
      if (!token) continue;
      const eq = token.indexOf('=');
      if (eq < 0) continue;
      const key = token.slice(0, eq);
      const value = token.slice(eq + 1);
      if (bs.enabled && ['max_data_area_mb', 'data_pages_per_blk', 'cmd_ring_size_mb'].includes(key)) {
        fail('EINVAL', `cannot change ${key} after enable`);
      }
      if (/(_size|_mb|_blk|_sectors|_supported|_io)$/.test(key) && !/^-?\d+$/.test(value)) {
        fail('EINVAL', `${key}: not a number`);
      }
      if (key === 'fd_buffered_io' && value !== '1') fail('EINVAL', 'bogus fd_buffered_io value');
      bs.control.set(key, value); // unknown keys are silently kept and ignored, like the kernel
    }
  }

  private async enableBackstore(path: string, bs: BackstoreState, data: string): Promise<void> {
    if (data.trim() !== '1') fail('EINVAL', 'enable only accepts 1');
    if (bs.enabled) fail('EEXIST', 'already enabled');
    if (bs.plugin === 'fileio' && !bs.control.has('fd_dev_name')) fail('EINVAL', 'missing fd_dev_name');
    if (bs.plugin === 'fileio' && !bs.control.has('fd_dev_size')) fail('EINVAL', 'missing fd_dev_size');
    bs.enabled = true;
    await fsp.writeFile(`${path}/enable`, '1\n');
    if (bs.plugin !== 'user') return;
    const blockSize = bs.control.get('hw_block_size') ?? '512';
    for (const [attr, key] of [
      ['hw_block_size', 'hw_block_size'],
      ['dev_config', 'dev_config'],
      ['dev_size', 'dev_size'],
      ['max_data_area_mb', 'max_data_area_mb'],
      ['nl_reply_supported', 'nl_reply_supported'],
    ] as const) {
      const value = key === 'hw_block_size' ? blockSize : bs.control.get(key);
      if (value !== undefined) await fsp.writeFile(`${path}/attrib/${attr}`, `${value}\n`);
    }
    let index = 0;
    const used = new Set([...this.backstores.values()].map((other) => other.uio));
    while (used.has(index)) index++;
    bs.uio = index;
    const uio = `${this.roots.sys}/class/uio/uio${index}`;
    await fsp.mkdir(`${uio}/maps/map0`, { recursive: true });
    const config = bs.control.get('dev_config');
    await fsp.writeFile(`${uio}/name`, `tcm-user/${bs.hba}/${bs.name}${config ? `/${config}` : ''}\n`);
    await fsp.writeFile(`${uio}/version`, '2.0\n');
    await fsp.writeFile(`${uio}/dev`, `246:${index}\n`);
    const mapBytes =
      (Number(bs.control.get('cmd_ring_size_mb') ?? 8) + Number(bs.control.get('max_data_area_mb') ?? 1024)) *
      MiB;
    await fsp.writeFile(`${uio}/maps/map0/size`, `0x${mapBytes.toString(16).padStart(16, '0')}\n`);
    await fsp.writeFile(`${uio}/maps/map0/offset`, '0x0\n');
    await fsp.writeFile(`${this.roots.dev}/uio${index}`, '');
  }

  private renderInfo(bs: BackstoreState): string {
    const c = bs.control;
    const status = `Status: DEACTIVATED  Max Queue Depth: ${bs.enabled ? 128 : 0}  SectorSize: ${
      bs.enabled ? (c.get('hw_block_size') ?? 512) : 0
    }  HwMaxSectors: ${bs.enabled ? (c.get('hw_max_sectors') ?? (bs.plugin === 'user' ? 128 : 16384)) : 0}\n`;
    if (bs.plugin === 'user') {
      return `${status}        Config: ${c.get('dev_config') ?? 'NULL'} Size: ${c.get('dev_size') ?? 0} MaxDataAreaMB: ${
        c.get('max_data_area_mb') ?? 1024
      } DataPagesPerBlk: ${c.get('data_pages_per_blk') ?? 1} CmdRingSizeMB: ${c.get('cmd_ring_size_mb') ?? 8}\n`;
    }
    const mode = c.get('fd_buffered_io') === '1' ? 'Buffered-WCE' : 'O_DSYNC';
    return `${status}        TCM FILEIO ID: 0        File: ${c.get('fd_dev_name') ?? ''}  Size: ${
      c.get('fd_dev_size') ?? 0
    }  Mode: ${mode} Async: 0\n`;
  }

  private async writeNexus(tpgPath: string, tpg: TpgState, value: string): Promise<void> {
    if (value === 'NULL') {
      if (!tpg.nexus) fail('ENODEV', 'no nexus to drop');
      const luns = (await this.real.readdir(`${tpgPath}/lun`)).filter((entry) => entry.kind === 'dir');
      if (luns.length > 0) fail('EPERM', 'LUNs still exist');
      tpg.nexus = undefined;
      return;
    }
    if (tpg.nexus) fail('EEXIST', 'nexus already set');
    if (value.split('.')[0] !== tpg.wwn.split('.')[0])
      fail('EINVAL', 'nexus WWN type differs from the target');
    tpg.nexus = value;
  }

  private async kernelSymlink(target: string, path: string, parts: string[]): Promise<void> {
    const lunDir = dirname(path);
    if (!this.userMade.has(lunDir)) fail('EPERM', `cannot link in ${lunDir}`);
    const existing = (await this.real.readdir(lunDir)).filter((entry) => entry.kind === 'symlink');
    if (existing.length > 0) fail('EEXIST', `${lunDir} already has a link`);
    const isMappedLun = parts[3] === 'acls';
    if (!isMappedLun) {
      const bs = this.backstores.get(target);
      if (!bs) fail('EINVAL', `${target} is not a backstore`);
      if (!bs.enabled) fail('ENODEV', `${target} is not enabled`);
    }
    await fsp.symlink(target, path);
    this.userMade.add(path);
    const tpgPath = dirname(dirname(lunDir));
    const tpg = this.tpgs.get(tpgPath);
    if (!isMappedLun && tpg && tpg.fabric === 'loopback' && tpg.nexus) {
      const lun = Number(/lun_(\d+)$/.exec(lunDir)![1]);
      const hctl = `${tpg.host}:0:${tpg.tag}:${lun}`;
      const index = this.nextDisk++;
      const name = `sd${String.fromCharCode(97 + (index % 26))}${index >= 26 ? index : ''}`;
      const block = `${this.roots.sys}/bus/scsi/devices/${hctl}/block/${name}`;
      await fsp.mkdir(block, { recursive: true });
      await fsp.writeFile(`${block}/dev`, `8:${index * 16}\n`);
      const bs = this.backstores.get(target)!;
      const bytes = Number(bs.control.get('dev_size') ?? bs.control.get('fd_dev_size') ?? 0);
      await fsp.writeFile(`${block}/size`, `${bytes / 512}\n`);
      await fsp.writeFile(`${this.roots.dev}/${name}`, '');
      await fsp.writeFile(`${this.roots.sys}/bus/scsi/devices/${hctl}/rescan`, '');
      this.disks.set(lunDir, { hctl, name, lunDir, backstore: bs });
    }
  }

  /** scsi_rescan_device: a write to a disk's `rescan` reads the capacity again (sd_revalidate_disk). */
  private async rescan(path: string): Promise<boolean> {
    const disk = [...this.disks.values()].find(
      (d) => path === `${this.roots.sys}/bus/scsi/devices/${d.hctl}/rescan`,
    );
    if (disk === undefined) return false;
    const bytes = Number(
      disk.backstore.control.get('dev_size') ?? disk.backstore.control.get('fd_dev_size') ?? 0,
    );
    await fsp.writeFile(
      `${this.roots.sys}/bus/scsi/devices/${disk.hctl}/block/${disk.name}/size`,
      `${bytes / 512}\n`,
    );
    this.rescans.push(disk.hctl);
    return true;
  }

  private removeDisksOf(lunDir: string): void {
    const disk = this.disks.get(lunDir);
    if (!disk) return;
    this.disks.delete(lunDir);
    void fsp.rm(`${this.roots.sys}/bus/scsi/devices/${disk.hctl}`, { recursive: true, force: true });
    void fsp.rm(`${this.roots.dev}/${disk.name}`, { force: true });
  }
}
