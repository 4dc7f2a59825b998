import { readFile, stat } from 'node:fs/promises';
import { BlockList, isIPv6 } from 'node:net';
import { type ChapCredentials, validateChapCredentials } from '@tcmu/configfs';
import type { IscsiInitiator } from '@tcmu/device';
import { CliError, ExitCode } from './errors.js';

/** Who may log in to a served disk's iSCSI target; the secrets stay off the command line. */
export interface IscsiAccessRequest {
  /** Initiator IQNs given ACLs (demo mode off); empty: demo mode. */
  readonly initiators: readonly string[];
  /** JSON file holding the CHAP credentials (see docs/iscsi.md). */
  readonly chapFile: string | undefined;
  /** --insecure-demo-mode: demo mode off a loopback portal was asked for explicitly. */
  readonly insecureDemoMode: boolean;
}

/** The environment variables CHAP credentials may come from instead of a file. */
export const chapEnvironment = {
  userid: 'TCMUFILE_CHAP_USER',
  password: 'TCMUFILE_CHAP_PASSWORD',
  mutualUserid: 'TCMUFILE_CHAP_MUTUAL_USER',
  mutualPassword: 'TCMUFILE_CHAP_MUTUAL_PASSWORD',
} as const satisfies Record<keyof ChapCredentials, string>;

/** Where secrets are read from; the real process's by default. */
export interface SecretSource {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The file's text and permission bits. */
  readFile(path: string): Promise<{ text: string; mode: number }>;
}

export const processSecrets: SecretSource = {
  env: process.env,
  readFile: async (path) => {
    const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { text, mode: info.mode };
  },
};

/** CHAP credentials that cannot be used: a missing, readable-by-others or malformed file, or a bad variable. */
export class ChapError extends CliError {
  static override readonly brand: string = 'tcmufile.ChapError';
  override name = 'ChapError';
  constructor(message: string, fix: string, exitCode: ExitCode = ExitCode.usage) {
    super(message, exitCode, { fix });
  }
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** 127.0.0.0/8 or ::1: demo mode there is reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  try {
    return loopback.check(host, isIPv6(host) ? 'ipv6' : 'ipv4');
  } catch {
    return false; // not an IP address (LIO's portals are addresses; the export refuses it)
  }
}

/** The ACLs of `request`, with CHAP from its file or the environment (never from argv). */
export async function resolveInitiators(
  request: IscsiAccessRequest,
  secrets: SecretSource,
): Promise<IscsiInitiator[] | undefined> {
  const chap =
    request.chapFile === undefined
      ? chapFromEnvironment(secrets.env)
      : await readChapFile(request.chapFile, secrets);
  if (request.chapFile !== undefined && chapFromEnvironment(secrets.env) !== undefined) {
    throw new ChapError(
      `CHAP credentials are both in --chap-file ${request.chapFile} and in ${chapEnvironment.userid}`,
      `unset the ${chapEnvironment.userid}/… variables or drop --chap-file`,
    );
  }
  if (request.initiators.length === 0) {
    if (chap === undefined) return undefined;
    throw new ChapError(
      'CHAP credentials were given but no --iscsi-initiator: LIO checks CHAP per initiator ACL',
      'name the initiators allowed with --iscsi-initiator IQN[,IQN...]',
    );
  }
  return request.initiators.map((iqn) => (chap === undefined ? { iqn } : { iqn, chap }));
}

function chapFromEnvironment(env: SecretSource['env']): ChapCredentials | undefined {
  const given = Object.fromEntries(
    Object.entries(chapEnvironment).flatMap(([key, variable]) =>
      env[variable] === undefined || env[variable] === '' ? [] : [[key, env[variable]]],
    ),
  ) as Partial<ChapCredentials>;
  if (Object.keys(given).length === 0) return undefined;
  return checkCredentials(given, (field) => chapEnvironment[field], 'the environment');
}

/**
 * A JSON object `{"userid", "password", "mutualUserid"?, "mutualPassword"?}` that only its owner
 * can read (like ssh's private keys: a secret others can read is already leaked).
 */
export async function readChapFile(path: string, secrets: SecretSource): Promise<ChapCredentials> {
  let file: { text: string; mode: number };
  try {
    file = await secrets.readFile(path);
  } catch (error) {
    throw new ChapError(
      `cannot read the CHAP file ${path}: ${(error as Error).message}`,
      'give a readable file (see docs/iscsi.md)',
      ExitCode.noImage,
    );
  }
  if ((file.mode & 0o077) !== 0) {
    throw new ChapError(
      `the CHAP file ${path} can be read by others (mode ${(file.mode & 0o777).toString(8)})`,
      `chmod 600 ${path}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(file.text);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ChapError(
      `the CHAP file ${path} is not a JSON object`,
      'write {"userid": "...", "password": "..."} (mutual CHAP: also "mutualUserid", "mutualPassword")',
    );
  }
  const unknown = Object.keys(parsed).filter((key) => !(key in chapEnvironment));
  if (unknown.length > 0) {
    throw new ChapError(
      `the CHAP file ${path} has unknown key ${JSON.stringify(unknown[0])}`,
      'use only userid, password, mutualUserid and mutualPassword',
    );
  }
  return checkCredentials(parsed as Partial<ChapCredentials>, (field) => field, path);
}

function checkCredentials(
  given: Partial<ChapCredentials>,
  nameOf: (field: keyof ChapCredentials) => string,
  where: string,
): ChapCredentials {
  for (const field of ['userid', 'password'] as const) {
    if (given[field] === undefined) {
      throw new ChapError(`CHAP ${nameOf(field)} is missing in ${where}`, `set ${nameOf(field)} too`);
    }
  }
  try {
    return validateChapCredentials('chap', given as ChapCredentials);
  } catch (error) {
    const { option, reason } = error as { option?: string; reason?: string };
    if (option === undefined || reason === undefined) throw error;
    const field = option.slice('chap.'.length) as keyof ChapCredentials;
    throw new ChapError(`CHAP ${nameOf(field)} in ${where}: ${reason}`, 'see docs/iscsi.md');
  }
}

/** Demo mode lets any initiator in: refused off a loopback portal unless explicitly allowed. */
export function refusesDemoMode(host: string, initiators: readonly string[], allowed: boolean): boolean {
  return initiators.length === 0 && !allowed && !isLoopbackHost(host);
}
