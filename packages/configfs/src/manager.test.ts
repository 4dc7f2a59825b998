import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AlreadyExistsError,
  exportConfig,
  importConfig,
  InUseError,
  InvalidNameError,
  InvalidOptionError,
  KernelError,
  NotFoundError,
  TargetManager,
  TimeoutError,
} from './index.js';
import { FakeKernel } from './testing/index.js';

let kernel: FakeKernel;
let manager: TargetManager;
let target: string;

beforeEach(async () => {
  kernel = await FakeKernel.create();
  manager = new TargetManager({ fs: kernel, roots: kernel.roots });
  target = `${kernel.roots.configfs}/target`;
});

afterEach(async () => {
  await kernel.dispose();
});

const MiB = 1024 * 1024;

describe('user (TCMU) backstores', () => {
  it('creates user_0/<name> with validated control, nl_reply_supported=-1 and enable last', async () => {
    const bs = await manager.createUserBackstore({
      name: 'disk0',
      size: 64 * MiB,
      maxDataAreaMb: 8,
      serial: 'sn0',
    });
    expect(bs).toMatchObject({
      plugin: 'user',
      hba: 0,
      name: 'disk0',
      devConfig: 'tcmu-node/disk0',
      blockSize: 512,
    });
    const writes = kernel.journal.filter((line) => line.startsWith('write') || line.startsWith('create'));
    expect(writes).toEqual([
      `create ${kernel.roots.run}/owners/core%2Fuser_0%2Fdisk0.json=${writes[0]!.split('=').slice(1).join('=')}`,
      `write ${bs.path}/control=dev_config=tcmu-node/disk0,dev_size=67108864,hw_block_size=512,nl_reply_supported=-1,max_data_area_mb=8`,
      `write ${bs.path}/wwn/vpd_unit_serial=sn0`,
      `write ${bs.path}/enable=1`,
    ]);
    const info = await manager.readBackstoreInfo(bs);
    expect(info).toMatchObject({
      config: 'tcmu-node/disk0',
      size: 64 * MiB,
      maxDataAreaMb: 8,
      sectorSize: 512,
    });
  });

  it('finds the UIO device by name and reads the hex map size', async () => {
    const bs = await manager.createUserBackstore({ name: 'disk0', size: MiB, maxDataAreaMb: 8 });
    const uio = await manager.findUio(bs, { timeoutMs: 100 });
    expect(uio).toMatchObject({
      index: 0,
      name: 'tcm-user/0/disk0/tcmu-node/disk0',
      devPath: `${kernel.roots.dev}/uio0`,
      mapSize: 16 * MiB,
      major: 246,
      minor: 0,
    });
  });

  it('tells apart two backstores whose names share a prefix', async () => {
    await manager.createUserBackstore({ name: 'disk', size: MiB, maxDataAreaMb: 8 });
    const second = await manager.createUserBackstore({ name: 'disk1', size: MiB, maxDataAreaMb: 16 });
    expect(second.hba).toBe(1);
    const uio = await manager.findUio(second);
    expect(uio.name).toBe('tcm-user/1/disk1/tcmu-node/disk1');
    expect(uio.mapSize).toBe(24 * MiB);
  });

  it('uses the lowest free HBA index across plugins', async () => {
    await kernel.mkdir(`${target}/core/fileio_0`);
    await kernel.mkdir(`${target}/core/user_2`);
    const bs = await manager.createUserBackstore({ name: 'a', size: MiB });
    expect(bs.hba).toBe(1);
  });

  it('writes attributes before enable (no netlink reconfig)', async () => {
    const bs = await manager.createUserBackstore({
      name: 'a',
      size: MiB,
      attributes: { cmd_time_out: 60, emulate_write_cache: 1 },
    });
    const order = kernel.journal
      .filter((l) => l.startsWith('write') && l.includes(bs.path))
      .map((l) => l.split('=')[0]);
    expect(order.indexOf(`write ${bs.path}/attrib/cmd_time_out`)).toBeLessThan(
      order.indexOf(`write ${bs.path}/enable`),
    );
    expect((await kernel.readFile(`${bs.path}/attrib/cmd_time_out`)).trim()).toBe('60');
  });

  it('rejects bad input before touching the filesystem', async () => {
    const bad: Array<[object, unknown]> = [
      [{ name: 'a/b', size: MiB }, InvalidNameError],
      [{ name: '..', size: MiB }, InvalidNameError],
      [{ name: 'a b', size: MiB }, InvalidNameError],
      [{ name: 'x'.repeat(65), size: MiB }, InvalidNameError],
      [{ name: 'a', size: 1000 }, InvalidOptionError],
      [{ name: 'a', size: MiB, blockSize: 1000 }, InvalidOptionError],
      [{ name: 'a', size: MiB, devConfig: 'no-subtype' }, InvalidOptionError],
      [{ name: 'a', size: MiB, devConfig: 'x/a,b' }, InvalidOptionError],
      [{ name: 'a', size: MiB, devConfig: 'x/a:b' }, InvalidOptionError],
      [{ name: 'a', size: MiB, cmdRingSizeMb: 9 }, InvalidOptionError],
      [{ name: 'a', size: MiB, attributes: { bogus: 1 } }, InvalidOptionError],
      [{ name: 'a', size: MiB, attributes: { emulate_write_cache: 2 } }, InvalidOptionError],
      [{ name: 'a', size: MiB, serial: 'has space' }, InvalidOptionError],
    ];
    for (const [options, error] of bad) {
      await expect(manager.createUserBackstore(options as never)).rejects.toBeInstanceOf(error);
    }
    expect(kernel.journal).toEqual([]);
  });

  it('refuses a duplicate name of the same plugin', async () => {
    await manager.createUserBackstore({ name: 'a', size: MiB });
    await expect(manager.createUserBackstore({ name: 'a', size: MiB })).rejects.toBeInstanceOf(
      AlreadyExistsError,
    );
  });

  it('rolls back when enable fails: no backstore, no empty HBA, no marker', async () => {
    const before = await kernel.snapshot();
    kernel.failNext('writeFile', '*/enable', 'EINVAL');
    const error = await manager.createUserBackstore({ name: 'a', size: MiB }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KernelError);
    expect((error as KernelError).errno).toBe('EINVAL');
    expect(await kernel.snapshot()).toEqual(before);
    expect(await manager.owners.list()).toEqual([]);
  });

  it('findUio times out with a typed error when the device never appears', async () => {
    await kernel.mkdir(`${target}/core/user_5`);
    await kernel.mkdir(`${target}/core/user_5/manual`);
    const ref = { plugin: 'user' as const, hba: 5, name: 'manual' };
    await expect(manager.findUio(ref, { timeoutMs: 60, intervalMs: 10 })).rejects.toBeInstanceOf(
      TimeoutError,
    );
    await expect(manager.findUio({ ...ref, name: 'absent' }, { timeoutMs: 60 })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });
});

describe('fileio backstores', () => {
  it('writes fd_* control, then block_size after enable', async () => {
    const bs = await manager.createFileioBackstore({
      name: 'f',
      file: '/tmp/f.img',
      size: 8 * MiB,
      blockSize: 4096,
    });
    const writes = kernel.journal
      .filter((l) => l.startsWith(`write ${bs.path}`))
      .map((l) => l.slice(bs.path.length + 7));
    expect(writes).toEqual([
      'control=fd_dev_name=/tmp/f.img,fd_dev_size=8388608',
      expect.stringMatching(/^wwn\/vpd_unit_serial=[0-9a-f-]{36}$/),
      'enable=1',
      'attrib/block_size=4096',
    ]);
    expect(await manager.readBackstoreInfo(bs)).toMatchObject({
      file: '/tmp/f.img',
      size: 8 * MiB,
      mode: 'O_DSYNC',
    });
  });

  it('rejects a relative or comma-containing backing file', async () => {
    await expect(manager.createFileioBackstore({ name: 'f', file: 'rel.img', size: MiB })).rejects.toThrow(
      /absolute/,
    );
    await expect(
      manager.createFileioBackstore({ name: 'f', file: '/a,b', size: MiB }),
    ).rejects.toBeInstanceOf(InvalidOptionError);
  });
});

describe('loopback LUNs', () => {
  it('writes the nexus before creating the LUN and finds the disk', async () => {
    const bs = await manager.createUserBackstore({ name: 'd', size: 32 * MiB });
    const lun = await manager.createLoopbackLun({ backstore: bs, wwn: 'naa.5001405000000001' });
    const steps = kernel.journal
      .filter((l) => l.includes('target/loopback'))
      .map((l) => l.replace(`${target}/`, ''));
    expect(steps).toEqual([
      `mkdir loopback`,
      `mkdir loopback/naa.5001405000000001`,
      `mkdir loopback/naa.5001405000000001/tpgt_1`,
      `write loopback/naa.5001405000000001/tpgt_1/nexus=naa.500140500000000f`,
      `mkdir loopback/naa.5001405000000001/tpgt_1/lun/lun_0`,
      `symlink loopback/naa.5001405000000001/tpgt_1/lun/lun_0/d -> ${bs.path}`,
    ]);
    const disk = await manager.waitForDisk(lun, { timeoutMs: 200 });
    expect(disk).toMatchObject({
      name: 'sda',
      devPath: `${kernel.roots.dev}/sda`,
      major: 8,
      minor: 0,
      hctl: '0:0:1:0',
    });
    expect(disk.sizeBytes).toBe(32 * MiB);
  });

  it('maps several LUNs of one target to their own disks', async () => {
    const a = await manager.createFileioBackstore({ name: 'a', file: '/tmp/a', size: 4 * MiB });
    const b = await manager.createFileioBackstore({ name: 'b', file: '/tmp/b', size: 8 * MiB });
    const wwn = 'naa.5001405000000002';
    const lunA = await manager.createLoopbackLun({ backstore: a, wwn, lun: 0 });
    const lunB = await manager.createLoopbackLun({ backstore: b, wwn, lun: 3 });
    const diskA = await manager.waitForDisk(lunA);
    const diskB = await manager.waitForDisk(lunB);
    expect([diskA.hctl, diskA.sizeBytes]).toEqual(['0:0:1:0', 4 * MiB]);
    expect([diskB.hctl, diskB.sizeBytes]).toEqual(['0:0:1:3', 8 * MiB]);
    expect(diskA.name).not.toBe(diskB.name);
    // Removing one LUN keeps the target for the other.
    await manager.removeLun(lunA);
    expect(await kernel.exists(lunB.path)).toBe(true);
    await manager.removeLun(lunB);
    expect(await kernel.exists(`${target}/loopback/${wwn}`)).toBe(false);
  });

  it('refuses a backstore that does not exist and a LUN number in use', async () => {
    const ghost = { plugin: 'user' as const, hba: 9, name: 'ghost' };
    await expect(manager.createLoopbackLun({ backstore: ghost })).rejects.toBeInstanceOf(NotFoundError);
    const bs = await manager.createUserBackstore({ name: 'd', size: MiB });
    const lun = await manager.createLoopbackLun({ backstore: bs });
    await expect(manager.createLoopbackLun({ backstore: bs, wwn: lun.wwn })).rejects.toBeInstanceOf(
      AlreadyExistsError,
    );
  });

  it('refuses to add LUNs to a target it does not own', async () => {
    await kernel.mkdir(`${target}/loopback`);
    await kernel.mkdir(`${target}/loopback/naa.5001405000000009`);
    const bs = await manager.createUserBackstore({ name: 'd', size: MiB });
    await expect(
      manager.createLoopbackLun({ backstore: bs, wwn: 'naa.5001405000000009' }),
    ).rejects.toBeInstanceOf(AlreadyExistsError);
  });

  it('a target made by a dead process whose pid this one reuses is not ours to extend', async () => {
    await kernel.spawnProcess(778, 1);
    const before = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: 778 });
    const first = await before.createUserBackstore({ name: 'first', size: MiB });
    const lun = await before.createLoopbackLun({ backstore: first });
    await kernel.spawnProcess(778, 2); // the old process died; a new one has its pid
    const reused = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: 778 });
    const bs = await reused.createUserBackstore({ name: 'second', size: MiB });
    await expect(reused.createLoopbackLun({ backstore: bs, wwn: lun.wwn, lun: 1 })).rejects.toBeInstanceOf(
      AlreadyExistsError,
    );
  });

  it('validates WWNs', async () => {
    const bs = await manager.createUserBackstore({ name: 'd', size: MiB });
    for (const wwn of ['naa.123', 'naa.50014050000000zz', 'iqn.2003-01.org.x', 'naa.5001405000000001/x']) {
      await expect(manager.createLoopbackLun({ backstore: bs, wwn })).rejects.toBeInstanceOf(
        InvalidNameError,
      );
    }
    await expect(manager.createLoopbackLun({ backstore: bs, tpgt: 32 })).rejects.toBeInstanceOf(
      InvalidOptionError,
    );
  });

  it('rolls back target, TPG and nexus when the link fails midway', async () => {
    const bs = await manager.createUserBackstore({ name: 'd', size: MiB });
    await kernel.mkdir(`${target}/loopback`);
    const before = await kernel.snapshot();
    kernel.failNext('symlink', /lun_0\/d$/, 'ENODEV');
    await expect(
      manager.createLoopbackLun({ backstore: bs, wwn: 'naa.5001405000000003' }),
    ).rejects.toBeInstanceOf(KernelError);
    expect(await kernel.snapshot()).toEqual(before);
    const tail = kernel.journal
      .slice(-5, -1)
      .map((l) => l.replace(`${target}/loopback/naa.5001405000000003/`, ''));
    // Reverse order: LUN dir, nexus dropped, TPG, target.
    expect(tail).toEqual([
      'rmdir tpgt_1/lun/lun_0',
      'write tpgt_1/nexus=NULL',
      'rmdir tpgt_1',
      expect.stringMatching(/^rmdir .*naa\.5001405000000003$/),
    ]);
    expect((await manager.owners.list()).map((r) => r.path)).toEqual(['core/user_0/d']);
  });

  it('waitForDisk times out when no disk appears (LUN made without nexus)', async () => {
    const bs = await manager.createUserBackstore({ name: 'd', size: MiB });
    const lun = await manager.createLoopbackLun({ backstore: bs });
    await kernel.unlink(`${lun.path}/d`);
    await expect(manager.waitForDisk(lun, { timeoutMs: 80, intervalMs: 10 })).rejects.toBeInstanceOf(
      TimeoutError,
    );
  });
});

describe('teardown', () => {
  it('removes LUN, nexus, TPG, target, backstore and HBA in that order and is idempotent', async () => {
    const before = await kernel.snapshot();
    const bs = await manager.createUserBackstore({ name: 'd', size: MiB });
    const lun = await manager.createLoopbackLun({ backstore: bs, wwn: 'naa.5001405000000004' });
    await kernel.mkdir(`${target}/loopback/naa.5001405000000004/tpgt_1/lun/lun_7`); // partial leftover
    const mark = kernel.journal.length;
    await manager.teardown([bs, lun]);
    const steps = kernel.journal
      .slice(mark)
      .filter((l) => !l.includes('/owners/'))
      .map((l) => l.replace(`${target}/`, ''));
    expect(steps).toEqual([
      'unlink loopback/naa.5001405000000004/tpgt_1/lun/lun_0/d',
      'rmdir loopback/naa.5001405000000004/tpgt_1/lun/lun_0',
      'rmdir loopback/naa.5001405000000004/tpgt_1/lun/lun_7',
      'write loopback/naa.5001405000000004/tpgt_1/nexus=NULL',
      'rmdir loopback/naa.5001405000000004/tpgt_1',
      'rmdir loopback/naa.5001405000000004',
      'rmdir core/user_0/d',
      'rmdir core/user_0',
    ]);
    await manager.teardown([bs, lun]);
    const after = (await kernel.snapshot()).filter((p) => !p.startsWith('loopback'));
    expect(after).toEqual(before);
    expect(await manager.owners.list()).toEqual([]);
  });

  it('refuses to remove a backstore still linked, unless forced', async () => {
    const bs = await manager.createUserBackstore({ name: 'd', size: MiB });
    const lun = await manager.createLoopbackLun({ backstore: bs });
    await expect(manager.removeBackstore(bs)).rejects.toBeInstanceOf(InUseError);
    await manager.removeBackstore(bs, { force: true });
    expect(await kernel.exists(lun.path)).toBe(false);
    expect(await kernel.exists(`${target}/loopback/${lun.wwn}`)).toBe(false);
    expect(await kernel.exists(`${target}/core/user_0`)).toBe(false);
  });

  it('keeps an HBA dir that still holds someone else’s backstore', async () => {
    await kernel.mkdir(`${target}/core/user_0`);
    await kernel.mkdir(`${target}/core/user_0/theirs`);
    const bs = await manager.createUserBackstore({ name: 'mine', size: MiB, hba: 0 });
    await manager.removeBackstore(bs);
    expect(await kernel.exists(`${target}/core/user_0/theirs`)).toBe(true);
  });

  it('tears down partial state left by a crash (LUN dir without link, no nexus)', async () => {
    await kernel.mkdir(`${target}/loopback`);
    await kernel.mkdir(`${target}/loopback/naa.5001405000000005`);
    await kernel.mkdir(`${target}/loopback/naa.5001405000000005/tpgt_1`);
    await kernel.mkdir(`${target}/loopback/naa.5001405000000005/tpgt_1/lun/lun_0`);
    await manager.removeTarget('loopback', 'naa.5001405000000005');
    expect(await kernel.exists(`${target}/loopback/naa.5001405000000005`)).toBe(false);
  });
});

describe('iSCSI', () => {
  it('exports in demo mode with an IPv6 portal and enables last', async () => {
    const bs = await manager.createFileioBackstore({ name: 'f', file: '/tmp/f', size: MiB });
    const t = await manager.exportIscsi({
      iqn: 'iqn.2003-01.org.example:t1',
      portals: ['127.0.0.1:3260', '[::1]:3261'],
      luns: [{ backstore: bs }],
    });
    const tpg = `${target}/iscsi/iqn.2003-01.org.example:t1/tpgt_1`;
    expect(await kernel.exists(`${tpg}/np/127.0.0.1:3260`)).toBe(true);
    expect(await kernel.exists(`${tpg}/np/[::1]:3261`)).toBe(true);
    for (const [attr, value] of Object.entries({
      authentication: '0',
      generate_node_acls: '1',
      cache_dynamic_acls: '1',
      demo_mode_write_protect: '0',
    })) {
      expect((await kernel.readFile(`${tpg}/attrib/${attr}`)).trim()).toBe(value);
    }
    expect(kernel.journal.at(-1)).toBe(`write ${tpg}/enable=1`);
    await manager.teardown([t, bs]);
    expect(await kernel.exists(`${target}/iscsi/iqn.2003-01.org.example:t1`)).toBe(false);
  });

  it('creates per-initiator ACLs with CHAP and mapped LUNs', async () => {
    const bs = await manager.createFileioBackstore({ name: 'f', file: '/tmp/f', size: MiB });
    const t = await manager.exportIscsi({
      iqn: 'iqn.2003-01.org.example:t2',
      portals: [{ ip: '127.0.0.1' }],
      luns: [{ backstore: bs, lun: 2 }],
      access: {
        mode: 'acl',
        initiators: [
          { iqn: 'iqn.1994-05.com.redhat:client', chap: { userid: 'user', password: 'secret123456' } },
        ],
      },
    });
    const acl = `${t.tpgPath}/acls/iqn.1994-05.com.redhat:client`;
    expect((await kernel.readFile(`${acl}/auth/userid`)).trim()).toBe('user');
    expect(await kernel.realpath(`${acl}/lun_2/tpg_lun_2`)).toBe(`${t.tpgPath}/lun/lun_2`);
    expect((await kernel.readFile(`${t.tpgPath}/attrib/authentication`)).trim()).toBe('1');
    const listed = (await manager.list()).targets.find((x) => x.wwn === t.iqn)!;
    expect(listed.tpgs[0]!.acls).toEqual([
      {
        iqn: 'iqn.1994-05.com.redhat:client',
        chap: { userid: 'user', password: 'secret123456' },
        mappedLuns: [{ index: 2, tpgLun: 2, writeProtect: false }],
      },
    ]);
    await manager.teardown([t, bs]);
    expect(await kernel.exists(t.path)).toBe(false);
  });

  it('adds and removes LUNs of an own target, mapped for every ACL; the target goes with its last LUN', async () => {
    const first = await manager.createFileioBackstore({ name: 'f1', file: '/tmp/f1', size: MiB });
    const second = await manager.createFileioBackstore({ name: 'f2', file: '/tmp/f2', size: MiB });
    const clients = ['iqn.1994-05.com.example:a', 'iqn.1994-05.com.example:b'];
    const t = await manager.exportIscsi({
      iqn: 'iqn.2003-01.org.example:shared',
      portals: ['127.0.0.1:3260'],
      luns: [{ backstore: first }],
      access: { mode: 'acl', initiators: clients.map((iqn) => ({ iqn })) },
    });
    const added = await manager.addIscsiLun({ iqn: t.iqn, backstore: second, lun: 1 });
    expect(added).toMatchObject({ kind: 'iscsi-lun', lun: 1, path: `${t.tpgPath}/lun/lun_1` });
    expect(await kernel.realpath(`${added.path}/f2`)).toBe(second.path);
    for (const client of clients) {
      expect(await kernel.realpath(`${t.tpgPath}/acls/${client}/lun_1/tpg_lun_1`)).toBe(added.path);
    }
    // Taken numbers are refused before anything is made.
    await expect(manager.addIscsiLun({ iqn: t.iqn, backstore: second, lun: 0 })).rejects.toBeInstanceOf(
      AlreadyExistsError,
    );
    await expect(
      manager.addIscsiLun({ iqn: 'iqn.2003-01.org.example:none', backstore: second, lun: 0 }),
    ).rejects.toBeInstanceOf(NotFoundError);

    // The first LUN goes: its mappings with it, the target and the other LUN stay.
    await manager.removeIscsiLun({
      kind: 'iscsi-lun',
      iqn: t.iqn,
      tpgt: 1,
      lun: 0,
      tpgPath: t.tpgPath,
      path: `${t.tpgPath}/lun/lun_0`,
    });
    expect(await kernel.exists(`${t.tpgPath}/lun/lun_0`)).toBe(false);
    for (const client of clients) {
      expect(await kernel.exists(`${t.tpgPath}/acls/${client}/lun_0`)).toBe(false);
      expect(await kernel.exists(`${t.tpgPath}/acls/${client}/lun_1`)).toBe(true);
    }
    await manager.removeIscsiLun(added);
    expect(await kernel.exists(t.path)).toBe(false);
    await manager.removeIscsiLun(added); // idempotent
    await manager.teardown([first, second]);
  });

  it("does not add a LUN to another process's target", async () => {
    const bs = await manager.createFileioBackstore({ name: 'f', file: '/tmp/f', size: MiB });
    const iqn = 'iqn.2003-01.org.example:theirs';
    await kernel.mkdir(`${target}/iscsi`).catch(() => undefined);
    await kernel.mkdir(`${target}/iscsi/${iqn}`);
    await kernel.mkdir(`${target}/iscsi/${iqn}/tpgt_1`);
    await expect(manager.addIscsiLun({ iqn, backstore: bs, lun: 0 })).rejects.toBeInstanceOf(
      AlreadyExistsError,
    );
    expect(await kernel.exists(`${target}/iscsi/${iqn}/tpgt_1/lun/lun_0`)).toBe(false);
    await manager.teardown([bs]);
  });

  it('writes mutual CHAP to auth/userid_mutual and auth/password_mutual, demo mode off', async () => {
    const bs = await manager.createFileioBackstore({ name: 'f', file: '/tmp/f', size: MiB });
    const initiator = 'iqn.1994-05.com.redhat:client';
    const t = await manager.exportIscsi({
      iqn: 'iqn.2003-01.org.example:mutual',
      portals: ['127.0.0.1:3260'],
      luns: [{ backstore: bs }],
      access: {
        mode: 'acl',
        initiators: [
          {
            iqn: initiator,
            chap: {
              userid: 'u',
              password: 'initsecret12',
              mutualUserid: 't',
              mutualPassword: 'targsecret12',
            },
          },
        ],
      },
    });
    const acl = `${t.tpgPath}/acls/${initiator}`;
    const writes = kernel.journal.filter((line) => line.startsWith(`write ${t.tpgPath}/`));
    expect(writes).toEqual([
      `write ${t.tpgPath}/attrib/generate_node_acls=0`,
      `write ${t.tpgPath}/attrib/authentication=1`,
      `write ${acl}/auth/userid=u`,
      `write ${acl}/auth/password=initsecret12`,
      `write ${acl}/auth/userid_mutual=t`,
      `write ${acl}/auth/password_mutual=targsecret12`,
      `write ${t.tpgPath}/enable=1`,
    ]);
    const listed = (await manager.list()).targets.find((x) => x.wwn === t.iqn)!;
    expect(listed.tpgs[0]?.acls[0]?.chap).toEqual({
      userid: 'u',
      password: 'initsecret12',
      mutualUserid: 't',
      mutualPassword: 'targsecret12',
    });
    await manager.teardown([t, bs]);
  });

  it("refuses half a mutual CHAP pair and a mutual secret equal to the initiator's", async () => {
    const bs = await manager.createFileioBackstore({ name: 'f', file: '/tmp/f', size: MiB });
    const base = {
      iqn: 'iqn.2003-01.org.example:m2',
      portals: ['127.0.0.1:3260'],
      luns: [{ backstore: bs }],
    };
    const withChap = (chap: Record<string, string>) =>
      manager.exportIscsi({
        ...base,
        access: {
          mode: 'acl',
          initiators: [
            { iqn: 'iqn.1994-05.com.redhat:c', chap: chap as { userid: string; password: string } },
          ],
        },
      });
    await expect(withChap({ userid: 'u', password: 'p1', mutualUserid: 't' })).rejects.toThrow(
      /access\.initiators\[0\]\.chap\.mutualPassword.*both/,
    );
    await expect(
      withChap({ userid: 'u', password: 'same', mutualUserid: 't', mutualPassword: 'same' }),
    ).rejects.toThrow(/must differ/);
    expect(await kernel.exists(`${target}/iscsi/${base.iqn}`)).toBe(false);
  });

  it('validates IQNs, portals and mapped LUNs, and rolls back a failing portal', async () => {
    const bs = await manager.createFileioBackstore({ name: 'f', file: '/tmp/f', size: MiB });
    const base = { portals: ['127.0.0.1:3260'], luns: [{ backstore: bs }] };
    await expect(manager.exportIscsi({ ...base, iqn: 'iqn.2003-13.org.x' })).rejects.toBeInstanceOf(
      InvalidNameError,
    );
    await expect(manager.exportIscsi({ ...base, iqn: 'IQN.2003-01.org.x' })).rejects.toBeInstanceOf(
      InvalidNameError,
    );
    await expect(manager.exportIscsi({ ...base, portals: ['1.2.3:3260'] })).rejects.toBeInstanceOf(
      InvalidNameError,
    );
    await expect(manager.exportIscsi({ ...base, portals: ['[::1]:70000'] })).rejects.toBeInstanceOf(
      InvalidNameError,
    );
    await expect(manager.exportIscsi({ ...base, portals: [] })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(
      manager.exportIscsi({
        ...base,
        access: {
          mode: 'acl',
          initiators: [{ iqn: 'iqn.2020-01.x.y', mappedLuns: [{ mappedLun: 0, tpgLun: 5 }] }],
        },
      }),
    ).rejects.toThrow(/not exported/);
    // From plain JS: "acl" without its list is a precise option error, not a TypeError.
    await expect(
      manager.exportIscsi({ ...base, access: { mode: 'acl' } as unknown as { mode: 'demo' } }),
    ).rejects.toThrow(/invalid option access\.initiators/);
    const before = await kernel.snapshot();
    kernel.failNext('mkdir', /np\/127\.0\.0\.1:3260$/, 'EADDRINUSE');
    await expect(manager.exportIscsi({ ...base, iqn: 'iqn.2003-01.org.example:t3' })).rejects.toBeInstanceOf(
      KernelError,
    );
    expect((await kernel.snapshot()).filter((p) => p !== 'iscsi' && !p.startsWith('iscsi/'))).toEqual(
      before.filter((p) => !p.startsWith('iscsi')),
    );
    expect(await kernel.exists(`${target}/iscsi/iqn.2003-01.org.example:t3`)).toBe(false);
  });
});

describe('ownership, list and cleanup', () => {
  it('lists ours and others’ objects and cleans up only stale ones of ours', async () => {
    // Someone else's (targetcli-like) backstore and target.
    await kernel.mkdir(`${target}/core/fileio_0`);
    await kernel.mkdir(`${target}/core/fileio_0/theirs`);
    await kernel.writeFile(`${target}/core/fileio_0/theirs/control`, 'fd_dev_name=/x,fd_dev_size=1048576');
    await kernel.writeFile(`${target}/core/fileio_0/theirs/enable`, '1');
    // A process of ours that crashes.
    await kernel.spawnProcess(4242);
    const crashed = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: 4242 });
    const staleBs = await crashed.createUserBackstore({ name: 'stale', size: MiB });
    const staleLun = await crashed.createLoopbackLun({ backstore: staleBs, wwn: 'naa.5001405000000006' });
    // A live one of ours.
    const live = await manager.createUserBackstore({ name: 'live', size: MiB });
    await kernel.killProcess(4242);

    const inventory = await manager.list();
    const summary = inventory.backstores.map((b) => [b.name, b.owned, b.stale]);
    expect(summary).toEqual([
      ['theirs', false, false],
      ['stale', true, true],
      ['live', true, false],
    ]);
    expect(
      inventory.targets.map((t) => [t.wwn, t.owned, t.stale, t.tpgs[0]?.luns[0]?.backstore?.name]),
    ).toEqual([['naa.5001405000000006', true, true, 'stale']]);

    const report = await manager.cleanup();
    expect(report.removed).toEqual(['loopback/naa.5001405000000006', 'core/user_1/stale']);
    expect(report.skipped).toEqual([]);
    // Its ring has no consumer: blocked and reset before its LUN went (so the unlink cannot wait on it).
    expect(kernel.actions).toEqual(['stale block_dev=1', 'stale reset_ring=2']);
    expect(await kernel.exists(staleLun.path)).toBe(false);
    expect(await kernel.exists(live.path)).toBe(true);
    expect(await kernel.exists(`${target}/core/fileio_0/theirs`)).toBe(true);
    expect((await manager.owners.list()).map((r) => r.path)).toEqual(['core/user_2/live']);
    expect(await manager.cleanup()).toEqual({ removed: [], skipped: [] });
  });

  it('two owners racing for one name: one wins, the loser leaves the winner’s marker, cleanup keeps it', async () => {
    for (const round of [1, 2, 3, 4, 5]) {
      const pids = [5000 + round * 2, 5001 + round * 2];
      for (const pid of pids) await kernel.spawnProcess(pid);
      const racers = pids.map((ownerPid) => new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid }));
      const results = await Promise.allSettled(
        racers.map((racer) => racer.createUserBackstore({ name: `race${round}`, size: MiB })),
      );
      const won = results.findIndex((r) => r.status === 'fulfilled');
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(lost.reason).toBeInstanceOf(AlreadyExistsError);
      const marker = await manager.owners.read(`core/user_${round - 1}/race${round}`);
      expect(marker?.pid).toBe(pids[won]);
      expect(await manager.cleanup()).toEqual({ removed: [], skipped: [] });
      expect((await manager.list()).backstores.find((b) => b.name === `race${round}`)?.stale).toBe(false);
    }
  });

  it('claims exclusively: a live owner’s marker refuses, a dead owner’s is taken over; release is the owner’s only', async () => {
    await kernel.spawnProcess(7001);
    await kernel.spawnProcess(7002);
    const a = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: 7001 });
    const b = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: 7002 });
    await a.owners.claim('core/user_9/x');
    await expect(b.owners.claim('core/user_9/x')).rejects.toBeInstanceOf(InUseError);
    expect(await b.owners.release('core/user_9/x')).toBe(false);
    expect((await manager.owners.read('core/user_9/x'))?.pid).toBe(7001);
    const record = (await a.owners.read('core/user_9/x'))!;
    expect(await b.owners.releaseStale(record)).toBe(false); // its owner is alive
    await kernel.killProcess(7001);
    await b.owners.claim('core/user_9/x');
    expect((await manager.owners.read('core/user_9/x'))?.pid).toBe(7002);
    expect(await a.owners.releaseStale(record)).toBe(false); // no longer that marker
    expect(await b.owners.release('core/user_9/x')).toBe(true);
    expect(await manager.owners.list()).toEqual([]);
  });

  it('treats a reused pid with another start time as dead', async () => {
    await kernel.spawnProcess(777, 1);
    const other = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: 777 });
    await other.createUserBackstore({ name: 'x', size: MiB });
    await kernel.spawnProcess(777, 2);
    expect((await manager.list()).backstores[0]!.stale).toBe(true);
  });

  it('counts a tcmu-node tagged backstore without marker as ours and stale', async () => {
    await kernel.mkdir(`${target}/core/user_3`);
    await kernel.mkdir(`${target}/core/user_3/orphan`);
    await kernel.writeFile(
      `${target}/core/user_3/orphan/control`,
      'dev_config=tcmu-node/orphan,dev_size=1048576',
    );
    await kernel.mkdir(`${target}/core/user_4`);
    await kernel.mkdir(`${target}/core/user_4/runner`);
    await kernel.writeFile(
      `${target}/core/user_4/runner/control`,
      'dev_config=qcow//tmp/x.img,dev_size=1048576',
    );
    const report = await manager.cleanup();
    expect(report.removed).toEqual(['core/user_3/orphan']);
    expect(await kernel.exists(`${target}/core/user_4/runner`)).toBe(true);
  });
});

describe('saveconfig', () => {
  it('round-trips user/fileio backstores, loopback and iSCSI targets', async () => {
    const user = await manager.createUserBackstore({
      name: 'u',
      size: 4 * MiB,
      blockSize: 4096,
      maxDataAreaMb: 8,
      serial: 'serial-u',
      attributes: { cmd_time_out: 45 },
    });
    const file = await manager.createFileioBackstore({
      name: 'f',
      file: '/tmp/f',
      size: 2 * MiB,
      buffered: true,
      serial: 'serial-f',
    });
    await manager.createLoopbackLun({ backstore: user, wwn: 'naa.5001405000000007', lun: 1 });
    await manager.exportIscsi({
      iqn: 'iqn.2003-01.org.example:rt',
      portals: ['[::1]:3260'],
      luns: [{ backstore: file }],
      access: {
        mode: 'acl',
        initiators: [{ iqn: 'iqn.2020-01.org.example:init', chap: { userid: 'u1', password: 'p1' } }],
      },
    });
    const saved = await exportConfig(manager);
    expect(saved.storage_objects).toContainEqual(
      expect.objectContaining({
        plugin: 'user',
        name: 'u',
        config: 'tcmu-node/u',
        size: 4 * MiB,
        wwn: 'serial-u',
      }),
    );
    expect(saved.storage_objects.find((s) => s.name === 'u')!.control).toContain('hw_block_size=4096');
    expect(saved.storage_objects.find((s) => s.name === 'u')?.attributes?.cmd_time_out).toBe(45);
    expect(saved.storage_objects).toContainEqual(
      expect.objectContaining({ plugin: 'fileio', name: 'f', dev: '/tmp/f', write_back: true }),
    );
    const json = JSON.parse(JSON.stringify(saved));

    // Fresh kernel: import, then export again gives the same document.
    const other = await FakeKernel.create();
    try {
      const m2 = new TargetManager({ fs: other, roots: other.roots });
      const handles = await importConfig(m2, json);
      expect(handles.map((h) => h.kind).sort()).toEqual([
        'backstore',
        'backstore',
        'iscsi-target',
        'loopback-lun',
      ]);
      expect(await exportConfig(m2)).toEqual(saved);
      await m2.teardown(handles);
      expect((await m2.list()).backstores).toEqual([]);
    } finally {
      await other.dispose();
    }
  });

  it('refuses to import over existing objects and rolls back a failing import', async () => {
    const doc = {
      fabric_modules: [],
      storage_objects: [{ plugin: 'user' as const, name: 'a', size: MiB, config: 'tcmu-node/a' }],
      targets: [
        {
          fabric: 'loopback' as const,
          wwn: 'naa.5001405000000008',
          tpgs: [{ tag: 1, luns: [{ index: 0, storage_object: '/backstores/user/missing' }] }],
        },
      ],
    };
    await expect(importConfig(manager, doc)).rejects.toThrow(/not in the configuration/);
    expect((await manager.list()).backstores).toEqual([]);
    await manager.createUserBackstore({ name: 'a', size: MiB });
    await expect(importConfig(manager, doc)).rejects.toBeInstanceOf(AlreadyExistsError);
    await expect(importConfig(manager, {} as never)).rejects.toBeInstanceOf(InvalidOptionError);
  });
});
