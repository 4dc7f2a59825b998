import { rm, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkEnvironment } from './environment.js';
import { FakeKernel } from './testing/index.js';

let kernel: FakeKernel;
beforeEach(async () => {
  kernel = await FakeKernel.create();
});
afterEach(async () => {
  await kernel.dispose();
});

describe('checkEnvironment', () => {
  it('passes on a ready host', async () => {
    const report = await checkEnvironment({
      fs: kernel,
      roots: kernel.roots,
      uid: 0,
      modprobePaths: [`${kernel.base}/sbin/modprobe`],
    });
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
    const report = await checkEnvironment({
      fs: kernel,
      roots: kernel.roots,
      uid: 1000,
      modprobePaths: [`${kernel.base}/sbin/modprobe`],
      modulesDep: `${kernel.base}/modules.dep`,
    });
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
    const report = await checkEnvironment({ fs: kernel, roots: kernel.roots, uid: 0, modprobePaths: [] });
    expect(report.checks.find((c) => c.id === 'modprobe')).toMatchObject({
      ok: false,
      required: false,
      fix: 'apt-get install kmod',
    });
    expect(report.ok).toBe(true);
  });
});
