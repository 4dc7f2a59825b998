import { type Backstores, OWN_SUBTYPE, relativeBackstore } from './backstores.js';
import type { ConfigfsContext } from './context.js';
import { parseBackstoreInfo } from './control.js';
import { InUseError } from './errors.js';
import { type Fabrics, LUN_DIR } from './fabrics.js';
import type {
  AclEntry,
  BackstoreEntry,
  BackstoreRef,
  CleanupReport,
  FoundUserBackstore,
  Inventory,
  LoopbackLun,
  LunEntry,
  MappedLunEntry,
  TargetEntry,
  TpgEntry,
  UserBackstore,
} from './model.js';
import type { OwnerRecord } from './owner.js';
import type { OwnershipControl } from './ownership.js';
import { type Portal, validateObjectName, validatePortal } from './validate.js';

/**
 * What exists and what links what: the listing, finding and adopting a user backstore
 * after a restart, removing a backstore with the LUNs that use it, and cleanup.
 * Methods that change anything expect the caller to hold the lock.
 */
export class InventoryControl {
  constructor(
    private readonly ctx: ConfigfsContext,
    private readonly ownership: OwnershipControl,
    private readonly backstores: Backstores,
    private readonly fabrics: Fabrics,
  ) {}

  async list(): Promise<Inventory> {
    const { fs, targetRoot } = this.ctx;
    const markers = new Map<string, OwnerRecord>();
    for (const record of await this.ownership.owners.list()) markers.set(record.path, record);
    const backstores: BackstoreEntry[] = [];
    for (const ref of await this.backstores.refs()) {
      const path = this.backstores.path(ref);
      const info = parseBackstoreInfo(await fs.readFile(`${path}/info`).catch(() => ''));
      const enabled = (await fs.readFile(`${path}/enable`).catch(() => '0')).trim() === '1';
      const serialText = await fs.readFile(`${path}/wwn/vpd_unit_serial`).catch(() => '');
      const serial = /Number:\s*(\S+)/.exec(serialText)?.[1];
      const tagged = ref.plugin === 'user' && (info.config ?? '').startsWith(`${OWN_SUBTYPE}/`);
      const ownership = await this.ownership.status(markers.get(relativeBackstore(ref)), tagged);
      backstores.push({ ...ref, path, enabled, info, serial, ...ownership });
    }
    const targets: TargetEntry[] = [];
    for (const fabric of await this.fabrics.listFabrics()) {
      for (const wwn of await this.fabrics.listTargetNames(fabric)) {
        const path = `${targetRoot}/${fabric}/${wwn}`;
        const tpgs: TpgEntry[] = [];
        for (const tag of await this.fabrics.listTpgTags(path))
          tpgs.push(await this.describeTpg(`${path}/tpgt_${tag}`, tag));
        const ownership = await this.ownership.status(markers.get(`${fabric}/${wwn}`), false);
        targets.push({ fabric, wwn, path, tpgs, ...ownership });
      }
    }
    return { backstores, targets };
  }

  async findUserBackstore(name: string): Promise<FoundUserBackstore | undefined> {
    const { fs, targetRoot } = this.ctx;
    validateObjectName('backstore name', name);
    const { owners } = this.ownership;
    const ref = (await this.backstores.refs()).find((r) => r.plugin === 'user' && r.name === name);
    if (ref === undefined) return undefined;
    const path = this.backstores.path(ref);
    const info = parseBackstoreInfo(await fs.readFile(`${path}/info`).catch(() => ''));
    const serialText = await fs.readFile(`${path}/wwn/vpd_unit_serial`).catch(() => '');
    const blockSize = Number((await fs.readFile(`${path}/attrib/hw_block_size`).catch(() => '')).trim());
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
    const owner = await owners.read(relativeBackstore(ref));
    const ownedByUs = owner !== undefined && (await owners.isOwn(owner));
    const ownerAlive = owner !== undefined && (ownedByUs || (await owners.isAlive(owner)));
    const luns: LoopbackLun[] = [];
    for (const wwn of await this.fabrics.listTargetNames('loopback')) {
      const targetPath = `${targetRoot}/loopback/${wwn}`;
      for (const tag of await this.fabrics.listTpgTags(targetPath)) {
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

  async adoptUserBackstore(
    found: FoundUserBackstore,
    note?: Readonly<Record<string, string>>,
  ): Promise<void> {
    const { owners } = this.ownership;
    const rel = relativeBackstore(found.backstore);
    if (!found.tagged) throw new InUseError(`backstore ${rel}`, ['another tool (not tagged tcmu-node/)']);
    const current = await owners.read(rel);
    if (current && !(await owners.isOwn(current)) && (await owners.isAlive(current))) {
      throw new InUseError(`backstore ${rel}`, [`process ${current.pid}`]);
    }
    await owners.claim(rel, note);
    for (const wwn of new Set(found.luns.map((lun) => lun.wwn))) {
      const targetRel = `loopback/${wwn}`;
      const record = await owners.read(targetRel);
      if (record && (await owners.isOwn(record))) continue;
      if (record && (await owners.isAlive(record))) continue; // shared with a live process: stays theirs
      await owners.claim(targetRel);
    }
  }

  /** Here rather than in backstores.ts: a backstore goes after the LUNs that link it. */
  async removeBackstore(ref: BackstoreRef, force: boolean): Promise<void> {
    const { targetRoot } = this.ctx;
    const path = this.backstores.path(ref);
    const rel = relativeBackstore(ref);
    if (await this.ctx.fs.exists(path)) {
      const users = await this.lunsUsing(ref);
      if (users.length > 0 && !force) throw new InUseError(`backstore ${rel}`, users);
      for (const lunPath of users) {
        await this.fabrics.removeLunDir(`${targetRoot}/${lunPath}`);
        const [fabric, wwn, tpg] = lunPath.split('/');
        if (!fabric || !wwn || !tpg) continue;
        const targetRel = `${fabric}/${wwn}`;
        const owner = await this.ownership.owners.read(targetRel);
        const left = await this.fabrics.listLunDirs(`${targetRoot}/${targetRel}/${tpg}`);
        if (left.length === 0 && (await this.ownership.mayRemoveTarget(owner))) {
          await this.fabrics.removeTarget(fabric, wwn);
        }
      }
      await this.ctx.rmdirIfPresent(path);
    }
    await this.ownership.dropMarker(rel);
    await this.backstores.removeHbaIfEmpty(ref);
  }

  async cleanup(): Promise<CleanupReport> {
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
      await this.fabrics.removeTarget(target.fabric, target.wwn);
      removed.push(`${target.fabric}/${target.wwn}`);
    }
    for (const backstore of inventory.backstores) {
      if (!backstore.stale) continue;
      const rel = relativeBackstore(backstore);
      const users = await this.lunsUsing(backstore);
      if (users.length > 0) {
        skipped.push({ path: rel, reason: `still linked by ${users.join(', ')}` });
        continue;
      }
      await this.removeBackstore(backstore, false);
      removed.push(rel);
    }
    // Markers whose object is gone (crash between marker and mkdir, or after rmdir).
    const { owners } = this.ownership;
    for (const record of await owners.list()) {
      if (await owners.isAlive(record)) continue;
      if (!(await this.ctx.fs.exists(`${this.ctx.targetRoot}/${record.path}`)))
        await owners.releaseStale(record);
    }
    return { removed, skipped };
  }

  /** `<fabric>/<wwn>/tpgt_<n>/lun/lun_<m>` paths whose link resolves to the backstore. */
  private async lunsUsing(ref: BackstoreRef): Promise<string[]> {
    const path = this.backstores.path(ref);
    const wanted = await this.ctx.fs.realpath(path).catch(() => path);
    const users: string[] = [];
    for (const fabric of await this.fabrics.listFabrics()) {
      for (const wwn of await this.fabrics.listTargetNames(fabric)) {
        const targetPath = `${this.ctx.targetRoot}/${fabric}/${wwn}`;
        for (const tag of await this.fabrics.listTpgTags(targetPath)) {
          const tpgPath = `${targetPath}/tpgt_${tag}`;
          for (const lunDir of await this.fabrics.listLunDirs(tpgPath)) {
            const lun = await this.fabrics.describeLun(`${tpgPath}/lun/${lunDir}`);
            if (lun.resolved === wanted) users.push(`${fabric}/${wwn}/tpgt_${tag}/lun/${lunDir}`);
          }
        }
      }
    }
    return users;
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
      const cacheType = `${this.ctx.roots.sys}/class/scsi_disk/${host}:0:${tpg.tag}:${lun}/cache_type`;
      await this.ctx.fs.writeFile(cacheType, 'temporary write through').catch(() => undefined);
    }
    await this.backstores.blockAndResetRing(ref, 2).catch(() => undefined);
  }

  private async describeTpg(tpgPath: string, tag: number): Promise<TpgEntry> {
    const { fs } = this.ctx;
    const luns: LunEntry[] = [];
    for (const lunDir of await this.fabrics.listLunDirs(tpgPath)) {
      const lun = await this.fabrics.describeLun(`${tpgPath}/lun/${lunDir}`);
      luns.push({
        index: Number(LUN_DIR.exec(lunDir)![1]),
        alias: lun.alias,
        backstore: await this.backstores.refOf(lun.resolved),
      });
    }
    const portals: Portal[] = [];
    for (const portal of await this.ctx.listDirs(`${tpgPath}/np`)) {
      try {
        portals.push(validatePortal(portal));
      } catch {
        // Not a portal we can parse (e.g. a future naming scheme): leave it out.
      }
    }
    const acls: AclEntry[] = [];
    for (const iqn of await this.ctx.listDirs(`${tpgPath}/acls`)) {
      const aclPath = `${tpgPath}/acls/${iqn}`;
      const userid = (await fs.readFile(`${aclPath}/auth/userid`).catch(() => '')).trim();
      const password = (await fs.readFile(`${aclPath}/auth/password`).catch(() => '')).trim();
      const mutualUserid = (await fs.readFile(`${aclPath}/auth/userid_mutual`).catch(() => '')).trim();
      const mutualPassword = (await fs.readFile(`${aclPath}/auth/password_mutual`).catch(() => '')).trim();
      const mutual = mutualUserid && mutualPassword ? { mutualUserid, mutualPassword } : {};
      const mappedLuns: MappedLunEntry[] = [];
      for (const mapped of await this.ctx.listDirs(aclPath)) {
        const match = LUN_DIR.exec(mapped);
        if (!match) continue;
        const entries = await fs.readdir(`${aclPath}/${mapped}`).catch(() => []);
        const link = entries.find((entry) => entry.kind === 'symlink');
        const target = link
          ? await fs.realpath(`${aclPath}/${mapped}/${link.name}`).catch(() => undefined)
          : undefined;
        const tpgLun = target ? LUN_DIR.exec(target.slice(target.lastIndexOf('/') + 1))?.[1] : undefined;
        const wp = (await fs.readFile(`${aclPath}/${mapped}/write_protect`).catch(() => '0')).trim();
        mappedLuns.push({
          index: Number(match[1]),
          tpgLun: tpgLun === undefined ? undefined : Number(tpgLun),
          writeProtect: wp === '1',
        });
      }
      acls.push({ iqn, chap: userid && password ? { userid, password, ...mutual } : undefined, mappedLuns });
    }
    const attributes: Record<string, number> = {};
    for (const name of [
      'authentication',
      'generate_node_acls',
      'cache_dynamic_acls',
      'demo_mode_write_protect',
    ]) {
      const text = await fs.readFile(`${tpgPath}/attrib/${name}`).catch(() => undefined);
      if (text !== undefined && /^-?\d+$/.test(text.trim())) attributes[name] = Number(text.trim());
    }
    const enableText = await fs.readFile(`${tpgPath}/enable`).catch(() => undefined);
    const address = await fs.readFile(`${tpgPath}/address`).catch(() => undefined);
    const nexus = await fs.readFile(`${tpgPath}/nexus`).catch(() => undefined);
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
}
