import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type EnvironmentReport, TargetManager } from '@tcmu/configfs';
import { FakeKernel } from '@tcmu/configfs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  configfsChecks,
  doctor,
  environmentError,
  formatCleanup,
  formatDoctor,
  formatDryRun,
  formatInventory,
  missingModules,
  removeStaleNodes,
  staleNodes,
  staleObjects,
} from './admin.js';
import { ExitCode } from './errors.js';

function report(failing: Record<string, string> = {}, optionalFailing: string[] = []): EnvironmentReport {
  const ids = [
    'root',
    'modprobe',
    'module:target_core_user',
    'module:tcm_loop',
    'module:iscsi_target_mod',
    'configfs',
  ];
  const optional = new Set(['modprobe', 'module:iscsi_target_mod']);
  const checks = ids.map((id) => {
    const failed = id in failing || optionalFailing.includes(id);
    return {
      id,
      ok: !failed,
      required: !optional.has(id),
      detail: failed ? `${id} is missing` : `${id} fine`,
      fix: failed ? (failing[id] ?? `fix ${id}`) : undefined,
    };
  });
  return { ok: checks.every((c) => c.ok || !c.required), checks };
}

describe('environment', () => {
  it('is ready when every required check passes, even with optional failures', () => {
    expect(environmentError(report({}, ['module:iscsi_target_mod']))).toBeUndefined();
  });

  it('names the most basic failure first, with its fix and exit code', () => {
    const notRoot = environmentError(
      report({ 'module:tcm_loop': 'modprobe tcm_loop', root: 'sudo -E tcmufile' }),
    )!;
    expect(notRoot.message).toBe('root is missing (and 1 more: run `tcmufile doctor`)');
    expect(notRoot.fix).toBe('sudo -E tcmufile');
    expect(notRoot.exitCode).toBe(ExitCode.noPermission);
    expect(
      environmentError(report({ configfs: 'mount -t configfs none /sys/kernel/config' }))!.exitCode,
    ).toBe(ExitCode.config);
    const module = environmentError(report({ 'module:target_core_user': 'modprobe target_core_user' }))!;
    expect(module.exitCode).toBe(ExitCode.unavailable);
    expect(module.fix).toBe('modprobe target_core_user');
  });

  it('names a missing module before configfs, which loading the modules fixes (69, not 78)', () => {
    const both = environmentError(
      report({
        configfs: 'mount -t configfs none /sys/kernel/config',
        'module:tcm_loop': 'modprobe tcm_loop',
      }),
    )!;
    expect(both.message).toBe('module:tcm_loop is missing (and 1 more: run `tcmufile doctor`)');
    expect(both.exitCode).toBe(ExitCode.unavailable);
  });

  it('can count only the configfs checks (list and cleanup load no module)', () => {
    const modulesMissing = report({ 'module:tcm_loop': 'modprobe tcm_loop' });
    expect(environmentError(modulesMissing, configfsChecks)).toBeUndefined();
    expect(environmentError(report({ root: 'sudo' }), configfsChecks)?.exitCode).toBe(ExitCode.noPermission);
  });

  it('lists the required modules to load, none on a kernel without loadable modules', () => {
    const missing = report({ 'module:tcm_loop': 'x', root: 'y' }, ['module:iscsi_target_mod']);
    expect(missingModules(missing)).toEqual(['tcm_loop']);
    const noModules = {
      ok: false,
      checks: [
        ...missing.checks,
        { id: 'kernel-modules', ok: false, required: true, detail: 'none', fix: 'another kernel' },
      ],
    };
    expect(missingModules(noModules)).toEqual([]);
  });

  it('doctor prints each check, the fix under each failure, and exits non-zero on a required failure', () => {
    const failed = formatDoctor(report({ 'module:tcm_loop': 'modprobe tcm_loop' }, ['modprobe']));
    expect(failed.exitCode).toBe(ExitCode.unavailable);
    expect(failed.text).toContain('FAIL  module:tcm_loop is missing\n      fix: modprobe tcm_loop\n');
    expect(failed.text).toContain('warn  modprobe is missing\n      fix: fix modprobe\n');
    expect(failed.text).toContain('ok    root fine\n');
    expect(failed.text).toMatch(/cannot serve TCMU devices yet/);
    const ready = formatDoctor(report());
    expect(ready.exitCode).toBe(0);
    expect(ready.text).toMatch(/Ready/);
    expect(ready.text).not.toContain('fix:');
  });
});

describe('doctor over a fake kernel', () => {
  let kernel: FakeKernel;
  beforeEach(async () => {
    kernel = await FakeKernel.create();
  });
  afterEach(async () => {
    await kernel.dispose();
  });
  const run = () =>
    doctor({
      fs: kernel,
      roots: kernel.roots,
      uid: 0,
      modprobePaths: [`${kernel.base}/sbin/modprobe`],
      modulesDir: kernel.modulesDir,
    });
  const unload = (...modules: string[]) =>
    Promise.all(modules.map((m) => rm(`${kernel.roots.sys}/module/${m}`, { recursive: true })));
  /** Without LIO loaded, configfs has no target directory either. */
  const unloadLio = async () => {
    await unload('target_core_mod', 'target_core_user', 'tcm_loop');
    await rm(`${kernel.roots.configfs}/target`, { recursive: true });
  };

  it('all good: every check ok, exit 0', async () => {
    const { text, exitCode } = await run();
    expect(exitCode).toBe(ExitCode.ok);
    expect(text).not.toMatch(/FAIL|warn/);
    expect(text).toContain(`ok    kernel modules in ${kernel.modulesDir}\n`);
    expect(text).toMatch(/Ready/);
  });

  it('no /lib/modules/<release>: says the kernel has no loadable modules and what to do, first, exit 69', async () => {
    await unloadLio();
    await rm(kernel.modulesDir, { recursive: true });
    const { text, exitCode } = await run();
    expect(exitCode).toBe(ExitCode.unavailable);
    expect(text).toContain(
      `FAIL  this kernel has no loadable modules (${kernel.modulesDir} missing): cannot modprobe target_core_mod, target_core_user, tcm_loop\n` +
        "      fix: use a kernel with LIO and TCMU (target_core_user, tcm_loop) built in or as modules, or run in node-tcmu's VM (`pnpm demo`; see its README)\n",
    );
    // No `modprobe` offered where it cannot work.
    expect(text).not.toContain('fix: modprobe');
    expect(text).toContain('FAIL  tcm_loop not loaded (loopback SCSI disks), not loadable\n');
    expect(text.indexOf('no loadable modules')).toBeLessThan(text.indexOf('/target missing'));
  });

  it('modules present but not loaded: modprobe each, before the configfs checks, exit 69', async () => {
    await unloadLio();
    const { text, exitCode } = await run();
    expect(exitCode).toBe(ExitCode.unavailable);
    expect(text).toContain(
      'FAIL  tcm_loop not loaded (loopback SCSI disks), but loadable\n      fix: modprobe tcm_loop\n',
    );
    expect(text).toContain('      fix: modprobe target_core_mod\n');
    expect(text).toContain('ok    kernel modules in');
    expect(text.indexOf('fix: modprobe target_core_user')).toBeLessThan(text.indexOf('/target missing'));
  });

  it('modules loaded, configfs not mounted: the mount command, exit 78', async () => {
    await writeFile(`${kernel.roots.proc}/mounts`, 'proc /proc proc rw 0 0\n');
    const { text, exitCode } = await run();
    expect(exitCode).toBe(ExitCode.config);
    expect(text).toContain(
      `FAIL  configfs is not mounted at ${kernel.roots.configfs}\n      fix: mount -t configfs none ${kernel.roots.configfs}\n`,
    );
    expect(text).not.toContain('fix: modprobe');
  });

  it('modules missing and configfs not mounted: the modules first (69)', async () => {
    await unloadLio();
    await writeFile(`${kernel.roots.proc}/mounts`, '');
    expect((await run()).exitCode).toBe(ExitCode.unavailable);
  });
});

describe('list and cleanup over a fake kernel', () => {
  let kernel: FakeKernel;
  let manager: TargetManager;
  beforeEach(async () => {
    kernel = await FakeKernel.create();
    manager = new TargetManager({ fs: kernel, roots: kernel.roots });
  });
  afterEach(async () => {
    await kernel.dispose();
  });

  it('says when there is nothing', async () => {
    expect(formatInventory(await manager.list())).toBe('No LIO backstores or targets.\n');
    expect(formatDryRun(staleObjects(await manager.list()))).toBe('Nothing to clean up.\n');
  });

  it('marks ours, live and stale, and cleanup removes only the stale ones', async () => {
    await kernel.spawnProcess(4242);
    const crashed = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: 4242 });
    const stale = await crashed.createUserBackstore({ name: 'crashed', size: 1 << 20 });
    await crashed.createLoopbackLun({ backstore: stale, wwn: 'naa.5001405000000006' });
    await manager.createUserBackstore({ name: 'live', size: 4 << 20, blockSize: 4096 });
    await kernel.killProcess(4242);

    const text = formatInventory(await manager.list());
    expect(text).toContain('Backstores (2):');
    expect(text).toMatch(
      /user_\d+\/crashed {2}1 MiB, 512-byte blocks {2}tcmu-node\/crashed {2}\[ours, stale \(pid 4242 gone\)\]/,
    );
    expect(text).toMatch(
      new RegExp(
        `user_\\d+/live {2}4 MiB, 4096-byte blocks {2}tcmu-node/live {2}\\[ours, pid ${process.pid}\\]`,
      ),
    );
    expect(text).toMatch(/loopback\/naa\.5001405000000006 {2}\[ours, stale/);
    expect(text).toMatch(/lun_0 -> user_\d+\/crashed/);
    expect(text).toContain('2 stale object(s) of ours: `tcmufile cleanup` removes them.');

    const wouldRemove = staleObjects(await manager.list());
    expect(wouldRemove).toEqual([
      'loopback/naa.5001405000000006',
      expect.stringMatching(/^core\/user_\d+\/crashed$/),
    ]);
    expect(formatDryRun(wouldRemove)).toMatch(/^Would remove 2 stale object\(s\):\n {2}loopback/);

    const cleaned = await manager.cleanup();
    expect(cleaned.removed).toEqual(wouldRemove);
    expect(formatCleanup(cleaned)).toMatch(/^Removed 2 stale object\(s\):\n/);
    expect(formatCleanup(await manager.cleanup())).toBe('Nothing to clean up.\n');
    expect(formatInventory(await manager.list())).toContain('Backstores (1):');
  });

  it('removes the device node a dead owner recorded, never a live owner’s or a directory', async () => {
    const nodes = join(kernel.base, 'dev-tcmufile');
    await mkdir(nodes);
    await kernel.spawnProcess(4343);
    const crashed = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: 4343 });
    await crashed.createUserBackstore({ name: 'gone', size: 1 << 20, note: { node: join(nodes, 'gone') } });
    await manager.createUserBackstore({ name: 'live', size: 1 << 20, note: { node: join(nodes, 'live') } });
    await crashed.createUserBackstore({ name: 'dir', size: 1 << 20, note: { node: join(nodes, 'dir') } });
    await symlink('/dev/sdq', join(nodes, 'gone'));
    await symlink('/dev/sdr', join(nodes, 'live'));
    await mkdir(join(nodes, 'dir'));
    await kernel.killProcess(4343);

    const found = await staleNodes(manager);
    expect([...found.values()].sort()).toEqual([join(nodes, 'dir'), join(nodes, 'gone')]);
    const report = await manager.cleanup();
    const removed = await removeStaleNodes(found, report.removed);
    expect(removed).toEqual([join(nodes, 'gone')]);
    expect(formatCleanup(report, removed)).toContain(`  ${join(nodes, 'gone')} (its device node)`);
    expect(await readdir(nodes)).toEqual(['dir', 'live']);
  });

  it('reports what cleanup left in place', () => {
    expect(
      formatCleanup({ removed: [], skipped: [{ path: 'core/user_1/x', reason: 'still linked by y' }] }),
    ).toBe('Nothing to clean up.\nLeft 1 in place:\n  core/user_1/x: still linked by y\n');
  });
});
