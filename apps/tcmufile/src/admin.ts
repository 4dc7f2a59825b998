import { lstat, unlink } from 'node:fs/promises';
import {
  type BackstoreEntry,
  type CleanupReport,
  checkEnvironment,
  type EnvironmentCheck,
  type EnvironmentOptions,
  type EnvironmentReport,
  type Inventory,
  type TargetEntry,
  type TargetManager,
} from '@tcmu/configfs';
import { EnvironmentError, ExitCode } from './errors.js';
import { checkRbdClient, type RbdClientCheck, type RbdImageRequest, rbdImageName } from './rbd-image.js';
import { formatBytes } from './size.js';

/** Exit code for the first failed required check: the most basic problem wins. */
function exitCodeOfCheck(check: EnvironmentCheck): ExitCode {
  if (check.id === 'root') return ExitCode.noPermission;
  if (check.id === 'configfs') return ExitCode.config;
  return ExitCode.unavailable;
}

/**
 * Failed checks in the order a person fixes them (`module:` covers every module): the modules
 * before configfs, since loading target_core_mod is what makes configfs/target appear.
 */
const checkOrder = ['root', 'kernel-modules', 'module:', 'configfs', 'configfs:target'];

function rank(check: EnvironmentCheck): number {
  const index = checkOrder.indexOf(check.id.startsWith('module:') ? 'module:' : check.id);
  return index === -1 ? checkOrder.length : index;
}

function failedRequired(report: EnvironmentReport, only?: readonly string[]): EnvironmentCheck[] {
  const failed = report.checks.filter(
    (check) => check.required && !check.ok && (only === undefined || only.includes(check.id)),
  );
  return failed.sort((a, b) => rank(a) - rank(b));
}

/** What list and cleanup need: they read and remove objects, they create none. */
export const configfsChecks = ['root', 'configfs', 'configfs:target'] as const;

/**
 * The error serve stops with, or undefined when the machine is ready. `only` limits the
 * checks that count (list and cleanup pass configfsChecks).
 */
export function environmentError(
  report: EnvironmentReport,
  only?: readonly string[],
): EnvironmentError | undefined {
  const failed = failedRequired(report, only);
  const first = failed[0];
  if (!first) return undefined;
  const others = failed.length > 1 ? ` (and ${failed.length - 1} more: run \`tcmufile doctor\`)` : '';
  return new EnvironmentError(`${first.detail}${others}`, exitCodeOfCheck(first), {
    fix: first.fix ?? 'Run `tcmufile doctor`.',
  });
}

/**
 * Modules a required check found missing that `modprobe` may load: none on a kernel without
 * loadable modules.
 */
export function missingModules(report: EnvironmentReport): string[] {
  if (report.checks.some((check) => check.id === 'kernel-modules' && !check.ok)) return [];
  return report.checks
    .filter((check) => check.required && !check.ok && check.id.startsWith('module:'))
    .map((check) => check.id.slice('module:'.length));
}

/** `tcmufile doctor` on this machine (or on the paths `environment` gives). */
export async function doctor(
  environment?: EnvironmentOptions,
  rbd?: RbdImageRequest,
): Promise<{ text: string; exitCode: ExitCode }> {
  const report = await checkEnvironment(environment);
  return formatDoctor(report, rbd && { image: rbd, checks: await checkRbdClient(rbd) });
}

/** `tcmufile doctor`: one line per check, the fix under each failure; exit 0 only if all required pass. */
export function formatDoctor(
  report: EnvironmentReport,
  rbd?: { image: RbdImageRequest; checks: readonly RbdClientCheck[] },
): { text: string; exitCode: ExitCode } {
  const describe = (check: EnvironmentCheck) => {
    const mark = check.ok ? 'ok  ' : check.required ? 'FAIL' : 'warn';
    const line = `${mark}  ${check.detail}`;
    return check.ok || !check.fix ? line : `${line}\n      fix: ${check.fix}`;
  };
  const lines = report.checks.map(describe);
  if (rbd) lines.push('', `Ceph client for rbd:${rbdImageName(rbd.image)}:`, ...rbd.checks.map(describe));
  const error = environmentError(report);
  const rbdFailure = rbd?.checks.find((check) => !check.ok);
  lines.push(
    '',
    error
      ? 'This machine cannot serve TCMU devices yet: apply the fixes above, then run `tcmufile doctor` again.'
      : rbdFailure
        ? 'This machine can serve TCMU devices, but not this RBD image yet: apply the fixes above.'
        : rbd
          ? `Ready: \`tcmufile serve rbd:${rbdImageName(rbd.image)}\` will work here.`
          : 'Ready: `tcmufile serve IMAGE --size 1G` will work here.',
  );
  // The machine's failures first (the order to fix them in), then the client's.
  const exitCode = error
    ? error.exitCode
    : rbdFailure
      ? (rbdFailure.exitCode ?? ExitCode.internal)
      : ExitCode.ok;
  return { text: `${lines.join('\n')}\n`, exitCode };
}

function ownershipOf(entry: { owned: boolean; ownerPid: number | undefined; stale: boolean }): string {
  if (!entry.owned) return 'other';
  if (entry.stale)
    return entry.ownerPid === undefined ? 'ours, stale' : `ours, stale (pid ${entry.ownerPid} gone)`;
  return entry.ownerPid === undefined ? 'ours' : `ours, pid ${entry.ownerPid}`;
}

function describeBackstore(entry: BackstoreEntry): string {
  const size = entry.info.size === undefined ? '?' : formatBytes(entry.info.size);
  const block = entry.info.sectorSize === undefined ? '' : `, ${entry.info.sectorSize}-byte blocks`;
  const source = entry.info.config ?? entry.info.file ?? '';
  const state = entry.enabled ? '' : ', disabled';
  return `  ${entry.plugin}_${entry.hba}/${entry.name}  ${size}${block}${state}  ${source}  [${ownershipOf(entry)}]`;
}

function describeTarget(target: TargetEntry): string[] {
  const lines = [`  ${target.fabric}/${target.wwn}  [${ownershipOf(target)}]`];
  for (const tpg of target.tpgs) {
    const extras = [
      tpg.address && `address ${tpg.address}`,
      tpg.nexus && `nexus ${tpg.nexus}`,
      tpg.portals.length > 0 &&
        `portals ${tpg.portals.map((p) => `${p.ip.includes(':') ? `[${p.ip}]` : p.ip}:${p.port}`).join(', ')}`,
    ].filter(Boolean);
    lines.push(`    tpgt_${tpg.tag}${extras.length > 0 ? `  ${extras.join(', ')}` : ''}`);
    for (const lun of tpg.luns) {
      const to = lun.backstore
        ? `${lun.backstore.plugin}_${lun.backstore.hba}/${lun.backstore.name}`
        : '(no link)';
      lines.push(`      lun_${lun.index} -> ${to}`);
    }
  }
  return lines;
}

/** `tcmufile list`: backstores then targets, ours marked. */
export function formatInventory(inventory: Inventory): string {
  if (inventory.backstores.length === 0 && inventory.targets.length === 0)
    return 'No LIO backstores or targets.\n';
  const lines: string[] = [];
  lines.push(`Backstores (${inventory.backstores.length}):`);
  lines.push(...inventory.backstores.map(describeBackstore));
  lines.push(`Targets (${inventory.targets.length}):`);
  for (const target of inventory.targets) lines.push(...describeTarget(target));
  const stale = [...inventory.backstores, ...inventory.targets].filter((entry) => entry.stale).length;
  if (stale > 0) lines.push('', `${stale} stale object(s) of ours: \`tcmufile cleanup\` removes them.`);
  return `${lines.join('\n')}\n`;
}

/** What `cleanup --dry-run` would remove: our stale targets, then our stale backstores. */
export function staleObjects(inventory: Inventory): string[] {
  return [
    ...inventory.targets.filter((t) => t.stale).map((t) => `${t.fabric}/${t.wwn}`),
    ...inventory.backstores.filter((b) => b.stale).map((b) => `core/${b.plugin}_${b.hba}/${b.name}`),
  ];
}

export function formatCleanup(report: CleanupReport, nodes: readonly string[] = []): string {
  const lines = [
    report.removed.length === 0
      ? 'Nothing to clean up.'
      : `Removed ${report.removed.length} stale object(s):`,
    ...report.removed.map((path) => `  ${path}`),
    ...nodes.map((node) => `  ${node} (its device node)`),
  ];
  if (report.skipped.length > 0) {
    lines.push(
      `Left ${report.skipped.length} in place:`,
      ...report.skipped.map((s) => `  ${s.path}: ${s.reason}`),
    );
  }
  return `${lines.join('\n')}\n`;
}

export function formatDryRun(paths: readonly string[]): string {
  if (paths.length === 0) return 'Nothing to clean up.\n';
  return `Would remove ${paths.length} stale object(s):\n${paths.map((path) => `  ${path}`).join('\n')}\n`;
}

/**
 * Device nodes (`/dev/tcmufile/NAME`) the owners of stale backstores recorded as theirs:
 * they go with their backstore, or their old numbers may later name another disk.
 */
export async function staleNodes(manager: Pick<TargetManager, 'owners'>): Promise<Map<string, string>> {
  const nodes = new Map<string, string>(); // backstore path -> node
  for (const record of await manager.owners.list()) {
    const node = record.note?.node;
    if (
      node !== undefined &&
      record.path.startsWith('core/user_') &&
      !(await manager.owners.isAlive(record))
    ) {
      nodes.set(record.path, node);
    }
  }
  return nodes;
}

/** Removes the nodes of the backstores cleanup removed; only device nodes and symlinks, never a directory. */
export async function removeStaleNodes(
  nodes: Map<string, string>,
  removed: readonly string[],
): Promise<string[]> {
  const gone: string[] = [];
  for (const [backstore, node] of nodes) {
    if (!removed.includes(backstore)) continue;
    try {
      const stat = await lstat(node);
      if (!stat.isBlockDevice() && !stat.isSymbolicLink()) continue;
      await unlink(node);
      gone.push(node);
    } catch {
      // Already gone.
    }
  }
  return gone;
}
