import { isRbdImage } from './rbd-image.js';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { IscsiInitiator } from '@tcmu/device';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { defaultNodeDir, type IoMode, type IscsiPortal, parsePortal } from './args.js';
import { CliError, ExitCode } from './errors.js';
import { ChapError, readChapFile, refusesDemoMode, type SecretSource } from './iscsi-access.js';
import { type BlockSize, checkDeviceSize, parseSize } from './size.js';

/** One disk of a config file, with defaults applied, paths absolute and CHAP read. */
export interface DiskSpec {
  /** Same key, same disk: a reload leaves it alone (a hash, so the secrets in it are not shown). */
  readonly key: string;
  readonly name: string;
  readonly image: string;
  readonly size: number | undefined;
  readonly blockSize: BlockSize;
  readonly readOnly: boolean;
  readonly dir: string;
  readonly lun: number | undefined;
  readonly io: IoMode;
  readonly queueDepth: number | undefined;
  readonly commandTimeoutS: number | undefined;
  readonly thirdPartyCopy: boolean;
  readonly iscsi:
    | {
        readonly portal: IscsiPortal;
        readonly iqn: string | undefined;
        readonly initiators: readonly IscsiInitiator[] | undefined;
      }
    | undefined;
}

/** The file as the schema describes it. */
interface ConfigFile {
  dir?: string;
  disks: Array<{
    name: string;
    image: string;
    size?: number | string;
    blockSize?: BlockSize;
    readOnly?: boolean;
    lun?: number;
    io?: IoMode;
    queueDepth?: number;
    commandTimeout?: number;
    thirdPartyCopy?: boolean;
    iscsi?: {
      portal: string;
      iqn?: string;
      initiators?: string[];
      chapFile?: string;
      insecureDemoMode?: boolean;
    };
  }>;
}

/** A config file that cannot be served: every problem, each with its JSON path. Nothing was created. */
export class ConfigError extends CliError {
  static override readonly brand: string = 'tcmufile.ConfigError';
  override name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[], exitCode: ExitCode = ExitCode.usage) {
    super(
      `${file}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  ${problems.join('\n  ')}`}`,
      exitCode,
      { fix: 'correct the config file (schema: apps/tcmufile/schema/config.schema.json, docs/config.md)' },
    );
    this.problems = problems;
  }
}

/** schema/config.schema.json: next to src/ and dist/ alike, as package.json is for the version. */
export function configSchema(): object {
  return JSON.parse(readFileSync(new URL('../schema/config.schema.json', import.meta.url), 'utf8'));
}

let validator: ValidateFunction<ConfigFile> | undefined;

/** Compiled on first use: every other command starts without it. */
function validate(document: unknown): document is ConfigFile {
  validator ??= new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile<ConfigFile>(
    configSchema(),
  );
  return validator(document);
}

/** Reads, validates and resolves a config file; throws one ConfigError naming every problem. */
export async function loadConfig(
  path: string,
  io: { readFile(path: string): Promise<string>; secrets: SecretSource },
): Promise<DiskSpec[]> {
  let text: string;
  try {
    text = await io.readFile(path);
  } catch (error) {
    throw new ConfigError(path, [`cannot be read: ${(error as Error).message}`], ExitCode.noImage);
  }
  // FILE.toml is TOML (the same keys, as tables); anything else is JSON. One schema for both.
  const toml = path.endsWith('.toml');
  let document: unknown;
  try {
    // Loaded only for a .toml file: every other command starts without it.
    document = toml ? (await import('smol-toml')).parse(text) : JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message.split('\n')[0];
    throw new ConfigError(path, [`is not ${toml ? 'TOML' : 'JSON'}: ${message}`]);
  }
  if (!validate(document)) throw new ConfigError(path, (validator?.errors ?? []).map(describeSchemaError));
  const problems: string[] = [];
  const base = dirname(resolve(path));
  const dir = document.dir ?? defaultNodeDir;
  const firstWith = new Map<string, number>();
  // Disks with the same iscsi.iqn share that target: one portal and one access list for all.
  const targets = new Map<string, { first: number; access: string; luns: Map<number, number> }>();
  const disks: Array<DiskSpec | undefined> = [];
  for (const [i, disk] of document.disks.entries()) {
    const at = `disks[${i}]`;
    const problem = (where: string, message: string) => problems.push(`${at}${where}: ${message}`);
    if (disk.iscsi?.iqn !== undefined) {
      const { portal, initiators, chapFile, insecureDemoMode } = disk.iscsi;
      const access = JSON.stringify([portal, [...(initiators ?? [])].sort(), chapFile, insecureDemoMode]);
      let target = targets.get(disk.iscsi.iqn);
      if (target === undefined) {
        target = { first: i, access, luns: new Map() };
        targets.set(disk.iscsi.iqn, target);
      } else if (target.access !== access) {
        problem(
          '.iscsi',
          `shares target ${disk.iscsi.iqn} with disks[${target.first}], so its portal, initiators, chapFile and insecureDemoMode must be the same`,
        );
      }
      if (disk.lun !== undefined) {
        const taken = target.luns.get(disk.lun);
        if (taken !== undefined)
          problem('.lun', `LUN ${disk.lun} of ${disk.iscsi.iqn} is disks[${taken}]'s too`);
        else target.luns.set(disk.lun, i);
      }
    }
    if (isRbdImage(disk.image)) {
      problem(
        '.image',
        `rbd: images are served by \`tcmufile serve ${disk.image}\`; a config file lists image files only`,
      );
    }
    for (const [field, value] of [
      ['name', disk.name],
      ['image', resolve(base, disk.image)],
    ] as const) {
      const first = firstWith.get(`${field} ${value}`);
      if (first === undefined) firstWith.set(`${field} ${value}`, i);
      else problem(`.${field}`, `${JSON.stringify(value)} is disks[${first}]'s ${field} too`);
    }
    const blockSize = disk.blockSize ?? 512;
    const size = checked(
      () => {
        const bytes = typeof disk.size === 'string' ? parseSize(disk.size, 'size') : disk.size;
        if (bytes !== undefined) checkDeviceSize(bytes, blockSize);
        return bytes;
      },
      (message) => problem('.size', message),
    );
    const iscsi =
      disk.iscsi &&
      (await resolveIscsi(disk.iscsi, base, io.secrets, (where, message) =>
        problem(`.iscsi${where}`, message),
      ));
    if (problems.length > 0) {
      disks.push(undefined);
      continue;
    }
    const spec = {
      name: disk.name,
      image: resolve(base, disk.image),
      size,
      blockSize,
      readOnly: disk.readOnly ?? false,
      dir,
      lun: disk.lun,
      io: disk.io ?? 'native',
      queueDepth: disk.queueDepth,
      commandTimeoutS: disk.commandTimeout,
      thirdPartyCopy: disk.thirdPartyCopy ?? true,
      iscsi,
    };
    disks.push({ key: createHash('sha256').update(JSON.stringify(spec)).digest('hex'), ...spec });
  }
  if (problems.length > 0) throw new ConfigError(path, problems);
  return disks as DiskSpec[];
}

async function resolveIscsi(
  iscsi: NonNullable<ConfigFile['disks'][number]['iscsi']>,
  base: string,
  secrets: SecretSource,
  problem: (where: string, message: string) => void,
): Promise<DiskSpec['iscsi']> {
  const portal = checked(
    () => parsePortal(iscsi.portal),
    () => problem('.portal', `${JSON.stringify(iscsi.portal)} is not HOST[:PORT] with a port 1..65535`),
  );
  const initiators = iscsi.initiators ?? [];
  if (portal && refusesDemoMode(portal.host, initiators, iscsi.insecureDemoMode ?? false)) {
    problem(
      '.initiators',
      `missing: demo mode on ${portal.host} lets any initiator on the network in; list the initiators, or set "insecureDemoMode": true`,
    );
  }
  let chap: Awaited<ReturnType<typeof readChapFile>> | undefined;
  if (iscsi.chapFile !== undefined) {
    if (initiators.length === 0)
      problem('.chapFile', 'needs "initiators": LIO checks CHAP per initiator ACL');
    try {
      chap = await readChapFile(resolve(base, iscsi.chapFile), secrets);
    } catch (error) {
      if (!(error instanceof ChapError)) throw error;
      problem('.chapFile', `${error.message}; ${error.fix}`);
    }
  }
  if (portal === undefined) return undefined;
  return {
    portal,
    iqn: iscsi.iqn,
    initiators:
      initiators.length === 0 ? undefined : initiators.map((iqn) => (chap ? { iqn, chap } : { iqn })),
  };
}

/** `check()`'s value, or undefined after telling `report` the message of the CliError it threw. */
function checked<T>(check: () => T, report: (message: string) => void): T | undefined {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    report(error.message);
    return undefined;
  }
}

/** `/disks/2/size` → `disks[2].size`, with ajv's message made specific where it is vague. */
export function describeSchemaError(error: ErrorObject): string {
  const path = error.instancePath
    .split('/')
    .slice(1)
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part.replace(/~1/g, '/').replace(/~0/g, '~')}`))
    .join('')
    .replace(/^\./, '');
  const where = path === '' ? '(top level)' : path;
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return `${where === '(top level)' ? '' : `${where}.`}${String(params.missingProperty)}: is required`;
    case 'additionalProperties':
      return `${where}: unknown property ${JSON.stringify(params.additionalProperty)}`;
    case 'enum':
      return `${where}: must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${where}: ${error.message ?? 'is not valid'}`;
  }
}
