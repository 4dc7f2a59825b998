import { release } from 'node:os';
import type { HostFs, Roots } from './host-fs.js';
import { NodeHostFs, resolveRoots } from './host-fs.js';

export interface EnvironmentCheck {
  readonly id: string;
  readonly ok: boolean;
  /** Required for node-tcmu's core use (TCMU over loopback); optional ones only limit features. */
  readonly required: boolean;
  readonly detail: string;
  /** The exact command that fixes it, when `ok` is false. */
  readonly fix: string | undefined;
}

export interface EnvironmentReport {
  /** All required checks passed. */
  readonly ok: boolean;
  readonly checks: readonly EnvironmentCheck[];
}

export interface EnvironmentOptions {
  readonly fs?: HostFs;
  readonly roots?: Partial<Roots>;
  /** Effective uid; default `process.getuid()`. */
  readonly uid?: number;
  /** Where modprobe may live; default /sbin, /usr/sbin, /bin, /usr/bin. */
  readonly modprobePaths?: readonly string[];
  /** `/lib/modules/<release>`: without it this kernel has no loadable modules. */
  readonly modulesDir?: string;
  /** `<modulesDir>/modules.dep`, to tell whether a module is loadable. */
  readonly modulesDep?: string;
}

/** What to do on a kernel that can neither load the LIO modules nor has them built in. */
const NO_MODULES_FIX =
  "use a kernel with LIO and TCMU (target_core_user, tcm_loop) built in or as modules, or run in node-tcmu's VM (`pnpm demo`; see its README)";

const MODULES: ReadonlyArray<{ name: string; required: boolean; purpose: string }> = [
  { name: 'target_core_mod', required: true, purpose: 'LIO core' },
  { name: 'target_core_user', required: true, purpose: 'TCMU backstores' },
  { name: 'uio', required: true, purpose: 'UIO devices for TCMU' },
  { name: 'tcm_loop', required: true, purpose: 'loopback SCSI disks' },
  { name: 'target_core_file', required: false, purpose: 'fileio backstores' },
  { name: 'iscsi_target_mod', required: false, purpose: 'iSCSI export' },
];

/**
 * What node-tcmu needs from the host: root, configfs mounted, the LIO modules
 * loaded (or loadable with modprobe). Each failed check carries its fix.
 */
export async function checkEnvironment(options: EnvironmentOptions = {}): Promise<EnvironmentReport> {
  const fs = options.fs ?? new NodeHostFs();
  const roots = resolveRoots(options.roots);
  const checks: EnvironmentCheck[] = [];
  const uid = options.uid ?? process.getuid?.();
  checks.push({
    id: 'root',
    ok: uid === 0,
    required: true,
    detail:
      uid === 0 ? 'running as root' : `running as uid ${uid ?? 'unknown'}; configfs and /dev/uio* need root`,
    fix: uid === 0 ? undefined : 'sudo -E <your command>',
  });

  let modprobe: string | undefined;
  for (const path of options.modprobePaths ?? [
    '/sbin/modprobe',
    '/usr/sbin/modprobe',
    '/bin/modprobe',
    '/usr/bin/modprobe',
  ]) {
    if (await fs.exists(path)) {
      modprobe = path;
      break;
    }
  }
  checks.push({
    id: 'modprobe',
    ok: modprobe !== undefined,
    required: false,
    detail: modprobe ? `modprobe at ${modprobe}` : 'modprobe not found: modules cannot be loaded on demand',
    fix: modprobe ? undefined : 'apt-get install kmod',
  });

  const modulesDir = options.modulesDir ?? `/lib/modules/${release()}`;
  const hasModules = await fs.exists(modulesDir);
  const dep = await fs.readFile(options.modulesDep ?? `${modulesDir}/modules.dep`).catch(() => '');
  const loaded = new Set<string>();
  for (const module of MODULES) {
    if (await fs.exists(`${roots.sys}/module/${module.name}`)) loaded.add(module.name);
  }
  // Reported before the modules: on a kernel without them (a container's, a sandbox's) no
  // modprobe helps, whatever each module's line says.
  const notLoaded = MODULES.filter((module) => module.required && !loaded.has(module.name));
  const modulesOk = hasModules || notLoaded.length === 0;
  checks.push({
    id: 'kernel-modules',
    ok: modulesOk,
    required: true,
    detail: hasModules
      ? `kernel modules in ${modulesDir}`
      : modulesOk
        ? `no loadable modules (${modulesDir} missing), but the required ones are loaded or built in`
        : `this kernel has no loadable modules (${modulesDir} missing): cannot modprobe ${notLoaded.map((module) => module.name).join(', ')}`,
    fix: modulesOk ? undefined : NO_MODULES_FIX,
  });
  for (const module of MODULES) {
    const ok = loaded.has(module.name);
    const loadable = modprobe !== undefined && new RegExp(`/${module.name}\\.ko(\\.[a-z]+)?:`).test(dep);
    checks.push({
      id: `module:${module.name}`,
      ok,
      required: module.required,
      detail: ok
        ? `${module.name} loaded (${module.purpose})`
        : `${module.name} not loaded (${module.purpose})${loadable ? ', but loadable' : hasModules ? '' : ', not loadable'}`,
      // Without a modules directory modprobe cannot help: the kernel-modules check says what can.
      fix: ok || !hasModules ? undefined : `modprobe ${module.name}`,
    });
  }

  const mounts = await fs.readFile(`${roots.proc}/mounts`).catch(() => '');
  const mounted = mounts.split('\n').some((line) => {
    const [, mountPoint, type] = line.split(' ');
    return type === 'configfs' && mountPoint === roots.configfs;
  });
  checks.push({
    id: 'configfs',
    ok: mounted,
    required: true,
    detail: mounted
      ? `configfs mounted at ${roots.configfs}`
      : `configfs is not mounted at ${roots.configfs}`,
    fix: mounted ? undefined : `mount -t configfs none ${roots.configfs}`,
  });
  const lio = await fs.exists(`${roots.configfs}/target`);
  checks.push({
    id: 'configfs:target',
    ok: lio,
    required: true,
    detail: lio
      ? `${roots.configfs}/target present`
      : `${roots.configfs}/target missing (LIO core not registered)`,
    // Without loadable modules the kernel-modules check carries the fix.
    fix: lio || !hasModules ? undefined : 'modprobe target_core_mod',
  });

  return { ok: checks.every((check) => check.ok || !check.required), checks };
}
