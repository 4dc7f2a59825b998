// Runs inside the kernel VM (pnpm test:kernel): real configfs, sysfs and devices.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkEnvironment, exportConfig, type Handle, importConfig, TargetManager } from './index.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const TARGET = '/sys/kernel/config/target';
const here = dirname(fileURLToPath(import.meta.url));
const manager = new TargetManager();
let handles: Handle[] = [];

/** Directory/symlink listing of LIO plus UIO and SCSI devices, for before/after comparisons. */
async function snapshot(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string, depth: number) => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const childRel = `${rel}/${entry.name}`;
      if (entry.isSymbolicLink()) out.push(`${childRel} -> ${await readlink(join(dir, entry.name))}`);
      else if (entry.isDirectory() && entry.name !== 'statistics') {
        out.push(childRel);
        if (depth > 0) await walk(join(dir, entry.name), childRel, depth - 1);
      }
    }
  };
  await walk(TARGET, 'target', 8);
  await walk('/sys/class/uio', 'uio', 0);
  await walk('/sys/bus/scsi/devices', 'scsi', 0);
  return out.sort();
}

async function ensureFabric(fabric: string): Promise<void> {
  await mkdir(`${TARGET}/${fabric}`).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
}

beforeAll(async () => {
  const env = await checkEnvironment();
  const failed = env.checks.filter((check) => check.required && !check.ok);
  expect(failed).toEqual([]);
  await ensureFabric('loopback');
  await ensureFabric('iscsi');
});

afterEach(async () => {
  await manager.teardown(handles);
  handles = [];
});

describe('TCMU backstore', () => {
  it('appears as /dev/uioN with the expected name, map size and mailbox version 2', async () => {
    const bs = await manager.createUserBackstore({ name: 'kt-uio', size: 8 * MiB, maxDataAreaMb: 8, hba: 7 });
    handles.push(bs);
    const uio = await manager.findUio(bs, { timeoutMs: 10_000 });
    expect(uio.name).toBe('tcm-user/7/kt-uio/tcmu-node/kt-uio');
    expect(uio.mapSize).toBe(16 * MiB); // 8 MiB command ring + 8 MiB data area
    expect(uio.devPath).toBe(`/dev/uio${uio.index}`);
    expect(await readFile(`/sys/class/uio/uio${uio.index}/name`, 'utf8')).toBe(`${uio.name}\n`);
    // Node has no mmap: read the mailbox through python's.
    const script = [
      'import mmap, os, struct, sys',
      'fd = os.open(sys.argv[1], os.O_RDWR)',
      'm = mmap.mmap(fd, int(sys.argv[2]), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)',
      'version, flags = struct.unpack_from("<HH", m, 0)',
      'cmdr_off, cmdr_size = struct.unpack_from("<II", m, 4)',
      'print(version, cmdr_off, cmdr_size)',
    ].join('\n');
    const { stdout } = await run('/usr/bin/python3', ['-c', script, uio.devPath, String(uio.mapSize)]);
    const [version, cmdrOff, cmdrSize] = stdout.trim().split(' ').map(Number);
    expect(version).toBe(2);
    expect(cmdrOff).toBe(128);
    expect(cmdrSize).toBe(8 * MiB - 128);
    const info = await manager.readBackstoreInfo(bs);
    expect(info).toMatchObject({ config: 'tcmu-node/kt-uio', size: 8 * MiB, maxDataAreaMb: 8 });
  });
});

describe('fileio over loopback', () => {
  it('becomes a block device of the right size that survives a dd round trip; teardown restores configfs', async () => {
    const before = await snapshot();
    const file = '/tmp/kt-fileio.img';
    const bs = await manager.createFileioBackstore({ name: 'kt-file', file, size: 16 * MiB });
    handles.push(bs);
    const lun = await manager.createLoopbackLun({ backstore: bs });
    handles.push(lun);
    const disk = await manager.waitForDisk(lun, { timeoutMs: 30_000 });
    expect(disk.sizeBytes).toBe(16 * MiB);
    expect(disk.devPath).toMatch(/^\/dev\/sd[a-z]+$/);
    const sysDev = (await readFile(`/sys/class/block/${disk.name}/dev`, 'utf8')).trim();
    expect(sysDev).toBe(`${disk.major}:${disk.minor}`);

    const pattern = randomBytes(MiB);
    await writeFile('/tmp/kt-pattern', pattern);
    await run('dd', [
      'if=/tmp/kt-pattern',
      `of=${disk.devPath}`,
      'bs=64k',
      'seek=16',
      'oflag=direct',
      'conv=fsync',
    ]);
    await run('dd', [
      `if=${disk.devPath}`,
      'of=/tmp/kt-readback',
      'bs=64k',
      'skip=16',
      'count=16',
      'iflag=direct',
    ]);
    expect((await readFile('/tmp/kt-readback')).equals(pattern)).toBe(true);
    const backing = await readFile(file);
    expect(backing.subarray(MiB, 2 * MiB).equals(pattern)).toBe(true);

    await manager.teardown(handles);
    handles = [];
    expect(await snapshot()).toEqual(before);
    await rm(file, { force: true });
  });

  it('maps two LUNs of one target to the right disks', async () => {
    const a = await manager.createFileioBackstore({ name: 'kt-a', file: '/tmp/kt-a.img', size: 4 * MiB });
    const b = await manager.createFileioBackstore({ name: 'kt-b', file: '/tmp/kt-b.img', size: 8 * MiB });
    handles.push(a, b);
    const wwn = 'naa.5001405abcdef012';
    const lunA = await manager.createLoopbackLun({ backstore: a, wwn, lun: 0 });
    const lunB = await manager.createLoopbackLun({ backstore: b, wwn, lun: 1 });
    handles.push(lunA, lunB);
    const diskA = await manager.waitForDisk(lunA, { timeoutMs: 30_000 });
    const diskB = await manager.waitForDisk(lunB, { timeoutMs: 30_000 });
    expect(diskA.name).not.toBe(diskB.name);
    expect(diskA.sizeBytes).toBe(4 * MiB);
    expect(diskB.sizeBytes).toBe(8 * MiB);
    expect(diskA.hctl.split(':').slice(2)).toEqual(['1', '0']);
    expect(diskB.hctl.split(':').slice(2)).toEqual(['1', '1']);
    // Data written to disk B lands in B's backing file.
    const tag = randomBytes(4096);
    await writeFile('/tmp/kt-tag', tag);
    await run('dd', ['if=/tmp/kt-tag', `of=${diskB.devPath}`, 'bs=4096', 'oflag=direct', 'conv=fsync']);
    expect((await readFile('/tmp/kt-b.img')).subarray(0, 4096).equals(tag)).toBe(true);
    expect((await readFile('/tmp/kt-a.img')).subarray(0, 4096).equals(tag)).toBe(false);
  });
});

describe('iSCSI', () => {
  it('exports a target on 127.0.0.1 that iscsi-inq and iscsi-readcapacity16 see', async () => {
    const bs = await manager.createFileioBackstore({
      name: 'kt-iscsi',
      file: '/tmp/kt-iscsi.img',
      size: 8 * MiB,
    });
    handles.push(bs);
    const iqn = 'iqn.2003-01.org.linux-iscsi.tcmu-node:kernel-test';
    const target = await manager.exportIscsi({ iqn, portals: ['127.0.0.1:3260'], luns: [{ backstore: bs }] });
    handles.push(target);
    const url = `iscsi://127.0.0.1/${iqn}/0`;
    const initiator = ['-i', 'iqn.2020-01.org.example:kernel-test-initiator'];
    const inq = await run('iscsi-inq', [...initiator, url]);
    expect(inq.stdout).toMatch(/LIO-ORG/);
    const cap = await run('iscsi-readcapacity16', [...initiator, url]);
    // 8 MiB in 512-byte blocks: last LBA 16383.
    expect(cap.stdout).toMatch(/RETURNED LOGICAL BLOCK ADDRESS:16383\b/);
    expect(cap.stdout).toMatch(/LOGICAL BLOCK LENGTH IN BYTES:512\b/);
  });
});

describe('saveconfig', () => {
  it('export, teardown, import gives the same configuration', async () => {
    const u = await manager.createUserBackstore({
      name: 'kt-save-u',
      size: 4 * MiB,
      maxDataAreaMb: 4,
      blockSize: 4096,
    });
    const f = await manager.createFileioBackstore({
      name: 'kt-save-f',
      file: '/tmp/kt-save.img',
      size: 4 * MiB,
    });
    handles.push(u, f);
    const lun = await manager.createLoopbackLun({ backstore: f, wwn: 'naa.5001405abcdef034', lun: 2 });
    const iscsi = await manager.exportIscsi({
      iqn: 'iqn.2003-01.org.linux-iscsi.tcmu-node:save',
      portals: ['127.0.0.1:3261'],
      luns: [{ backstore: f }],
      access: {
        mode: 'acl',
        initiators: [
          { iqn: 'iqn.2020-01.org.example:client', chap: { userid: 'user1', password: 'secretsecret1' } },
        ],
      },
    });
    handles.push(lun, iscsi);
    const saved = await exportConfig(manager, { ownedOnly: true });
    expect(saved.storage_objects.map((so) => so.name).sort()).toEqual(['kt-save-f', 'kt-save-u']);
    await manager.teardown(handles);
    handles = [];
    handles = await importConfig(manager, JSON.parse(JSON.stringify(saved)));
    expect(await exportConfig(manager, { ownedOnly: true })).toEqual(saved);
  });
});

describe('cleanup after a crash', () => {
  it('removes exactly the leftovers of a dead owner', async () => {
    // Someone else's object, made by hand like targetcli would.
    const foreign = `${TARGET}/core/fileio_40/kt-foreign`;
    await mkdir(foreign, { recursive: true });
    await writeFile(`${foreign}/control`, 'fd_dev_name=/tmp/kt-foreign.img,fd_dev_size=1048576');
    await writeFile(`${foreign}/enable`, '1');
    // A live object of this process.
    const mine = await manager.createFileioBackstore({
      name: 'kt-mine',
      file: '/tmp/kt-mine.img',
      size: MiB,
    });
    handles.push(mine);
    try {
      const wwn = 'naa.5001405abcdef056';
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', join(here, '__fixtures__/crash-owner.ts'), 'kt-crash', wwn, '/tmp/kt-crash.img'],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      const line = await new Promise<string>((resolve, reject) => {
        let text = '';
        child.stdout.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          if (text.includes('\n')) resolve(text.split('\n')[0]!);
        });
        child.on('exit', (code) => reject(new Error(`crash-owner exited early with ${code}`)));
      });
      const created = JSON.parse(line) as { pid: number; fileio: { path: string }; user: { path: string } };
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGKILL');
      await exited;

      const inventory = await manager.list();
      const stale = inventory.backstores.filter((b) => b.stale).map((b) => b.name);
      expect(stale.sort()).toEqual(['kt-crash-f', 'kt-crash-u']);
      expect(inventory.backstores.find((b) => b.name === 'kt-foreign')).toMatchObject({
        owned: false,
        stale: false,
      });
      expect(inventory.backstores.find((b) => b.name === 'kt-mine')).toMatchObject({
        owned: true,
        stale: false,
      });

      const report = await manager.cleanup();
      expect([...report.removed].sort()).toEqual(
        [
          `loopback/${wwn}`,
          created.fileio.path.slice(TARGET.length + 1),
          created.user.path.slice(TARGET.length + 1),
        ].sort(),
      );
      const after = await manager.list();
      expect(after.backstores.map((b) => b.name).sort()).toEqual(['kt-foreign', 'kt-mine']);
      expect(after.targets.some((t) => t.wwn === wwn)).toBe(false);
    } finally {
      await rm(`${foreign}`, { recursive: false }).catch(() => undefined);
      await import('node:fs/promises').then((fs) => fs.rmdir(foreign)).catch(() => undefined);
      await import('node:fs/promises').then((fs) => fs.rmdir(dirname(foreign))).catch(() => undefined);
    }
  });
});

describe('ownership across processes', () => {
  /** Starts the race-owner fixture; `line` resolves with its first stdout line as JSON. */
  function raceOwner(args: string[]) {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(here, '__fixtures__/race-owner.ts'), ...args],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    const exit = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const line = new Promise<Record<string, unknown>>((resolve, reject) => {
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('\n')) resolve(JSON.parse(text.split('\n')[0]!));
      });
      exit.then((code) => reject(new Error(`race-owner ${args.join(' ')} ended with ${code} and no report`)));
    });
    return { child, exit, line };
  }

  it('4 processes × 50 rounds over 6 shared names, a janitor and 2 crashed owners: no live backstore is ever removed', async () => {
    const janitor = raceOwner(['janitor']);
    const crashers = ['kt-rc-a', 'kt-rc-b'].map((name) => raceOwner(['crasher', name]));
    const crashed: string[] = [];
    for (const crasher of crashers) {
      const report = (await crasher.line) as { backstore: { path: string } };
      crashed.push(report.backstore.path.slice(TARGET.length + 1));
      crasher.child.kill('SIGKILL');
      await crasher.exit;
    }
    const names = Array.from({ length: 6 }, (_, i) => `kt-race-${i}`).join(',');
    const workers = [0, 1, 2, 3].map((id) => raceOwner(['worker', `w${id}`, '50', names]));
    const reports = (await Promise.all(workers.map((w) => w.line))) as Array<{
      created: number;
      collisions: number;
      violations: string[];
    }>;
    expect(await Promise.all(workers.map((w) => w.exit))).toEqual([0, 0, 0, 0]);
    janitor.child.stdin.end();
    const cleaned = (await janitor.line) as { passes: number; removed: string[] };
    expect(await janitor.exit).toBe(0);
    console.log(
      `ownership race: created ${reports.map((r) => r.created).join('/')}, collisions ${reports
        .map((r) => r.collisions)
        .join('/')}, janitor passes ${cleaned.passes}, removed ${cleaned.removed.join(' ')}`,
    );

    expect(reports.flatMap((r) => r.violations)).toEqual([]);
    expect(reports.every((r) => r.created > 0)).toBe(true);
    expect(reports.reduce((n, r) => n + r.collisions, 0)).toBeGreaterThan(0); // they did contend
    // The janitor removed exactly the crashed owners' backstores, nothing of a live worker.
    expect([...cleaned.removed].sort()).toEqual([...crashed].sort());
    const left = (await manager.list()).backstores.filter((b) => /^kt-r(ace|c)-/.test(b.name));
    expect(left).toEqual([]);
    const markers = (await manager.owners.list()).filter((m) => /kt-r(ace|c)-/.test(m.path));
    expect(markers).toEqual([]);
  }, 600_000);
});
