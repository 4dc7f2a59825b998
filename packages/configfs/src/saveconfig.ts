import { parseControl, WRITABLE_ATTRIBUTES } from './control.js';
import { AlreadyExistsError, InvalidOptionError } from './errors.js';
import type { TargetManager } from './manager.js';
import type { Backstore, BackstoreRef, Handle, InitiatorAclOptions, IscsiAccess } from './model.js';
import { validatePortal } from './validate.js';

/**
 * The subset of targetcli's `/etc/target/saveconfig.json` (rtslib-fb `RTSRoot.dump()`)
 * that we support: `user` and `fileio` storage objects, `loopback` and `iscsi` targets.
 */
export interface SaveConfig {
  fabric_modules: unknown[];
  storage_objects: SavedStorageObject[];
  targets: SavedTarget[];
}

export interface SavedStorageObject {
  plugin: 'user' | 'fileio';
  name: string;
  size: number;
  wwn?: string;
  attributes?: Record<string, number>;
  /** user: dev_config. */
  config?: string;
  hw_max_sectors?: number;
  /** user: extra control tuples, `max_data_area_mb=…,hw_block_size=…`. */
  control?: string;
  /** fileio: backing file. */
  dev?: string;
  /** fileio: buffered I/O with write-back cache. */
  write_back?: boolean;
}

export interface SavedTarget {
  fabric: 'loopback' | 'iscsi';
  wwn: string;
  tpgs: SavedTpg[];
}

export interface SavedTpg {
  tag: number;
  enable?: boolean;
  attributes?: Record<string, number>;
  luns: Array<{ index: number; storage_object: string; alias?: string }>;
  portals?: Array<{ ip_address: string; port: number }>;
  node_acls?: Array<{
    node_wwn: string;
    chap_userid?: string;
    chap_password?: string;
    chap_mutual_userid?: string;
    chap_mutual_password?: string;
    mapped_luns: Array<{ index: number; tpg_lun: number; write_protect?: boolean }>;
  }>;
}

/** Dumps what configfs holds (only our objects when `ownedOnly`). */
export async function exportConfig(
  manager: TargetManager,
  options: { ownedOnly?: boolean } = {},
): Promise<SaveConfig> {
  const inventory = await manager.list();
  const storageObjects: SavedStorageObject[] = [];
  const included = new Set<string>();
  for (const bs of inventory.backstores) {
    if (options.ownedOnly && !bs.owned) continue;
    const attributes: Record<string, number> = {};
    for (const name of Object.keys(WRITABLE_ATTRIBUTES[bs.plugin])) {
      const text = await manager.fs.readFile(`${bs.path}/attrib/${name}`).catch(() => undefined);
      if (text !== undefined && /^-?\d+$/.test(text.trim())) attributes[name] = Number(text.trim());
    }
    const size = bs.info.size ?? 0;
    const saved: SavedStorageObject = { plugin: bs.plugin, name: bs.name, size, attributes };
    if (bs.serial) saved.wwn = bs.serial;
    if (bs.plugin === 'user') {
      if (bs.info.config) saved.config = bs.info.config;
      if (bs.info.hwMaxSectors) saved.hw_max_sectors = bs.info.hwMaxSectors;
      const control: string[] = [];
      if (bs.info.maxDataAreaMb) control.push(`max_data_area_mb=${bs.info.maxDataAreaMb}`);
      if (bs.info.sectorSize) control.push(`hw_block_size=${bs.info.sectorSize}`);
      if (bs.info.dataPagesPerBlk) control.push(`data_pages_per_blk=${bs.info.dataPagesPerBlk}`);
      if (bs.info.cmdRingSizeMb) control.push(`cmd_ring_size_mb=${bs.info.cmdRingSizeMb}`);
      saved.control = control.join(',');
    } else {
      if (bs.info.file) saved.dev = bs.info.file;
      saved.write_back = bs.info.mode === 'Buffered-WCE';
    }
    storageObjects.push(saved);
    included.add(`${bs.plugin}/${bs.name}`);
  }
  const targets: SavedTarget[] = [];
  for (const target of inventory.targets) {
    if (options.ownedOnly && !target.owned) continue;
    if (target.fabric !== 'loopback' && target.fabric !== 'iscsi') continue;
    targets.push({
      fabric: target.fabric,
      wwn: target.wwn,
      tpgs: target.tpgs.map((tpg) => {
        const saved: SavedTpg = {
          tag: tpg.tag,
          enable: tpg.enabled ?? true,
          attributes: { ...tpg.attributes },
          luns: tpg.luns
            .filter((lun) => lun.backstore !== undefined)
            .map((lun) => ({
              index: lun.index,
              storage_object: `/backstores/${lun.backstore!.plugin}/${lun.backstore!.name}`,
              ...(lun.alias ? { alias: lun.alias } : {}),
            })),
          portals: tpg.portals.map((portal) => ({ ip_address: portal.ip, port: portal.port })),
          node_acls: tpg.acls.map((acl) => ({
            node_wwn: acl.iqn,
            ...(acl.chap ? { chap_userid: acl.chap.userid, chap_password: acl.chap.password } : {}),
            ...(acl.chap?.mutualUserid && acl.chap.mutualPassword
              ? { chap_mutual_userid: acl.chap.mutualUserid, chap_mutual_password: acl.chap.mutualPassword }
              : {}),
            mapped_luns: acl.mappedLuns
              .filter((mapped) => mapped.tpgLun !== undefined)
              .map((mapped) => ({
                index: mapped.index,
                tpg_lun: mapped.tpgLun!,
                write_protect: mapped.writeProtect,
              })),
          })),
        };
        return saved;
      }),
    });
  }
  return { fabric_modules: [], storage_objects: storageObjects, targets };
}

/**
 * Recreates a saved configuration: storage objects first, then targets. Refuses
 * to overwrite anything that exists. All or nothing: on any failure every
 * object created so far is removed again. Returns the handles, for `teardown()`.
 */
export async function importConfig(manager: TargetManager, config: SaveConfig): Promise<Handle[]> {
  if (typeof config !== 'object' || config === null || !Array.isArray(config.storage_objects)) {
    throw new InvalidOptionError('config', 'not a saveconfig document (storage_objects missing)');
  }
  const targets = Array.isArray(config.targets) ? config.targets : [];
  const existing = await manager.list();
  for (const so of config.storage_objects) {
    if (existing.backstores.some((bs) => bs.plugin === so.plugin && bs.name === so.name)) {
      throw new AlreadyExistsError(
        `${so.plugin} backstore ${so.name}`,
        `/backstores/${so.plugin}/${so.name}`,
      );
    }
  }
  for (const target of targets) {
    if (existing.targets.some((t) => t.fabric === target.fabric && t.wwn === target.wwn)) {
      throw new AlreadyExistsError(`${target.fabric} target ${target.wwn}`, `${target.fabric}/${target.wwn}`);
    }
  }

  const handles: Handle[] = [];
  try {
    const byPath = new Map<string, Backstore>();
    for (const [i, so] of config.storage_objects.entries()) {
      const backstore = await createStorageObject(manager, so, i);
      handles.push(backstore);
      byPath.set(`/backstores/${so.plugin}/${so.name}`, backstore);
    }
    const resolve = (path: string, where: string): BackstoreRef => {
      const found = byPath.get(path);
      if (!found) throw new InvalidOptionError(where, `storage object ${path} is not in the configuration`);
      return found;
    };
    for (const [i, target] of targets.entries()) {
      if (target.fabric === 'loopback') {
        for (const tpg of target.tpgs ?? []) {
          for (const lun of tpg.luns ?? []) {
            handles.push(
              await manager.createLoopbackLun({
                backstore: resolve(lun.storage_object, `targets[${i}].luns`),
                wwn: target.wwn,
                tpgt: tpg.tag,
                lun: lun.index,
                ...(lun.alias ? { alias: lun.alias } : {}),
              }),
            );
          }
        }
      } else if (target.fabric === 'iscsi') {
        for (const tpg of target.tpgs ?? []) {
          handles.push(
            await manager.exportIscsi({
              iqn: target.wwn,
              tpgt: tpg.tag,
              portals: (tpg.portals ?? []).map((p) => validatePortal({ ip: p.ip_address, port: p.port })),
              luns: (tpg.luns ?? []).map((lun) => ({
                backstore: resolve(lun.storage_object, `targets[${i}].luns`),
                lun: lun.index,
                ...(lun.alias ? { alias: lun.alias } : {}),
              })),
              access: accessOf(tpg),
              enable: tpg.enable ?? true,
            }),
          );
        }
      } else {
        throw new InvalidOptionError(`targets[${i}].fabric`, `unsupported fabric "${String(target.fabric)}"`);
      }
    }
  } catch (error) {
    await manager.teardown(handles).catch(() => undefined);
    throw error;
  }
  return handles;
}

function accessOf(tpg: SavedTpg): IscsiAccess {
  const attributes = tpg.attributes ?? {};
  if (attributes.generate_node_acls === 1 || (tpg.node_acls ?? []).length === 0) {
    return { mode: 'demo', writeProtect: attributes.demo_mode_write_protect === 1 };
  }
  const initiators: InitiatorAclOptions[] = (tpg.node_acls ?? []).map((acl) => ({
    iqn: acl.node_wwn,
    ...(acl.chap_userid && acl.chap_password
      ? {
          chap: {
            userid: acl.chap_userid,
            password: acl.chap_password,
            ...(acl.chap_mutual_userid && acl.chap_mutual_password
              ? { mutualUserid: acl.chap_mutual_userid, mutualPassword: acl.chap_mutual_password }
              : {}),
          },
        }
      : {}),
    mappedLuns: acl.mapped_luns.map((mapped) => ({
      mappedLun: mapped.index,
      tpgLun: mapped.tpg_lun,
      writeProtect: mapped.write_protect ?? false,
    })),
  }));
  return { mode: 'acl', initiators };
}

async function createStorageObject(
  manager: TargetManager,
  so: SavedStorageObject,
  i: number,
): Promise<Backstore> {
  const where = `storage_objects[${i}]`;
  if (so.plugin === 'user') {
    if (!so.config) throw new InvalidOptionError(`${where}.config`, 'a user storage object needs config');
    const control = parseControl('user', so.control ?? '');
    const num = (key: string) => (control[key] === undefined ? undefined : Number(control[key]));
    const blockSize = num('hw_block_size');
    const maxDataAreaMb = num('max_data_area_mb');
    const dataPagesPerBlk = num('data_pages_per_blk');
    const cmdRingSizeMb = num('cmd_ring_size_mb');
    return manager.createUserBackstore({
      name: so.name,
      size: so.size,
      devConfig: so.config,
      ...(blockSize !== undefined ? { blockSize } : {}),
      ...(maxDataAreaMb !== undefined ? { maxDataAreaMb } : {}),
      ...(dataPagesPerBlk !== undefined ? { dataPagesPerBlk } : {}),
      ...(cmdRingSizeMb !== undefined ? { cmdRingSizeMb } : {}),
      ...(so.hw_max_sectors !== undefined ? { hwMaxSectors: so.hw_max_sectors } : {}),
      ...(so.wwn ? { serial: so.wwn } : {}),
      ...(so.attributes ? { attributes: pick(so.attributes, 'user') } : {}),
    });
  }
  if (so.plugin === 'fileio') {
    if (!so.dev) throw new InvalidOptionError(`${where}.dev`, 'a fileio storage object needs dev');
    const attributes = so.attributes ? pick(so.attributes, 'fileio') : {};
    const { block_size: blockSize, ...rest } = attributes;
    return manager.createFileioBackstore({
      name: so.name,
      file: so.dev,
      size: so.size,
      buffered: so.write_back ?? false,
      ...(blockSize !== undefined ? { blockSize } : {}),
      ...(so.wwn ? { serial: so.wwn } : {}),
      attributes: rest,
    });
  }
  throw new InvalidOptionError(
    `${where}.plugin`,
    `unsupported plugin "${String((so as { plugin: unknown }).plugin)}"`,
  );
}

/** Keeps the attributes we can write; targetcli dumps read-only ones too. */
function pick(attributes: Record<string, number>, plugin: 'user' | 'fileio'): Record<string, number> {
  const allowed = WRITABLE_ATTRIBUTES[plugin];
  return Object.fromEntries(Object.entries(attributes).filter(([name]) => name in allowed));
}
