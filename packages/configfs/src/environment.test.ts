import { rm, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkEnvironment, type EnvironmentOptions } from './environment.js';
import { FakeKernel } from './testing/index.js';

let kernel: FakeKernel;
beforeEach(async () => {
  kernel = await FakeKernel.create();
});
afterEach(async () => {
  await kernel.dispose();
});

/** The fake kernel's paths, none of the host's. */
function on(fake: FakeKernel, options: EnvironmentOptions = {}): EnvironmentOptions {
  return {
    fs: fake,
    roots: fake.roots,
    uid: 0,
    modprobePaths: [`${fake.base}/sbin/modprobe`],
    modulesDir: fake.modulesDir,
    ...options,
  };
}

describe('checkEnvironment', () => {
  it('passes on a ready host', async () => {
    const report = await checkEnvironment(on(kernel));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('names the exact fix for each missing piece', async () => {
    await rm(`${kernel.roots.sys}/module/tcm_loop`, { recursive: true });
    await rm(`${kernel.roots.sys}/module/iscsi_target_mod`, { recursive: true });
    await writeFile(`${kernel.roots.proc}/mounts`, 'proc /proc proc rw 0 0\n');
    await writeFile(
      `${kernel.base}/modules.dep`,
      'kernel/drivers/target/loopback/tcm_loop.ko: target_core_mod.ko\n',
    );
    const report = await checkEnvironment(
      on(kernel, { uid: 1000, modulesDep: `${kernel.base}/modules.dep` }),
    );
    expect(report.ok).toBe(false);
    const failed = Object.fromEntries(
      report.checks.filter((c) => !c.ok).map((c) => [c.id, [c.required, c.fix]]),
    );
    expect(failed).toEqual({
      root: [true, 'sudo -E <your command>'],
      'module:tcm_loop': [true, 'modprobe tcm_loop'],
      'module:iscsi_target_mod': [false, 'modprobe iscsi_target_mod'],
      configfs: [true, `mount -t configfs none ${kernel.roots.configfs}`],
    });
    expect(report.checks.find((c) => c.id === 'module:tcm_loop')?.detail).toMatch(/but loadable/);
  });

  it('reports a missing modprobe as optional', async () => {
    const report = await checkEnvironment(on(kernel, { modprobePaths: [] }));
    expect(report.checks.find((c) => c.id === 'modprobe')).toMatchObject({
      ok: false,
      required: false,
      fix: 'apt-get install kmod',
    });
    expect(report.ok).toBe(true);
  });

  it('says when the kernel has no loadable modules, and offers no modprobe that cannot work', async () => {
    await rm(`${kernel.roots.sys}/module/tcm_loop`, { recursive: true });
    await rm(`${kernel.roots.sys}/module/target_core_user`, { recursive: true });
    await rm(kernel.modulesDir, { recursive: true });
    const report = await checkEnvironment(on(kernel));
    expect(report.ok).toBe(false);
    const modules = report.checks.find((c) => c.id === 'kernel-modules')!;
    expect(modules).toMatchObject({ ok: false, required: true });
    expect(modules.detail).toBe(
      `this kernel has no loadable modules (${kernel.modulesDir} missing): cannot modprobe target_core_user, tcm_loop`,
    );
    expect(modules.fix).toMatch(/built in or as modules, or run in node-tcmu's VM/);
    const tcmLoop = report.checks.find((c) => c.id === 'module:tcm_loop')!;
    expect(tcmLoop).toMatchObject({ ok: false, fix: undefined });
    expect(tcmLoop.detail).toMatch(/not loadable$/);
    // Listed before the modules it explains.
    const ids = report.checks.map((c) => c.id);
    expect(ids.indexOf('kernel-modules')).toBeLessThan(ids.indexOf('module:target_core_mod'));
  });

  it('needs no modules directory when the required modules are built in (or loaded)', async () => {
    await rm(kernel.modulesDir, { recursive: true });
    const report = await checkEnvironment(on(kernel));
    expect(report.ok).toBe(true);
    expect(report.checks.find((c) => c.id === 'kernel-modules')).toMatchObject({ ok: true, fix: undefined });
    expect(report.checks.find((c) => c.id === 'kernel-modules')?.detail).toMatch(/loaded or built in/);
  });
});
