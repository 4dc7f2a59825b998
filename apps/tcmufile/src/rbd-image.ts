/**
 * `tcmufile serve rbd:POOL/IMAGE`: a Ceph RBD image instead of a file, through @tcmu/rbd
 * (docs/rbd.md). @tcmu/rbd is an optional dependency (it needs librbd1 and librados2), loaded
 * only when an rbd: image is served or checked, so a file-only machine never needs Ceph.
 */
import type { RbdBackend } from '@tcmu/rbd';
import { access, constants } from 'node:fs/promises';
import type { EnvironmentCheck } from '@tcmu/configfs';
import { CliError, EnvironmentError, ExitCode, ImageError, UsageError } from './errors.js';
import type { PreparedImage } from './image.js';
import { formatBytes } from './size.js';

export const rbdPrefix = 'rbd:';

/** Which image: `rbd:POOL[/NAMESPACE]/IMAGE[@SNAPSHOT]`. */
export interface RbdImageSpec {
  readonly pool: string;
  readonly namespace?: string;
  readonly image: string;
  readonly snapshot?: string;
}

/** The image and the Ceph client that opens it (--ceph-conf, --id, --keyring). */
export interface RbdImageRequest extends RbdImageSpec {
  readonly conf?: string;
  readonly clientId?: string;
  readonly keyring?: string;
}

export const isRbdImage = (image: string): boolean => image.startsWith(rbdPrefix);

// Ceph refuses '/' and '@' in pool, namespace and image names; keep to what rbd(8) prints.
const cephName = /^[A-Za-z0-9_.+-][A-Za-z0-9_.+-]*$/;

/** Parses `rbd:POOL[/NAMESPACE]/IMAGE[@SNAPSHOT]`. */
export function parseRbdImage(text: string): RbdImageSpec {
  const body = text.slice(rbdPrefix.length);
  const at = body.indexOf('@');
  const path = at < 0 ? body : body.slice(0, at);
  const snapshot = at < 0 ? undefined : body.slice(at + 1);
  const parts = path.split('/');
  const bad = (why: string) =>
    new UsageError(`RBD image '${text}' ${why}`, {
      fix: 'write it as rbd:POOL/IMAGE, rbd:POOL/NAMESPACE/IMAGE or rbd:POOL/IMAGE@SNAPSHOT',
    });
  if (parts.length < 2 || parts.length > 3) throw bad('needs a pool and an image');
  for (const part of parts) if (!cephName.test(part)) throw bad(`has an invalid name part '${part}'`);
  if (snapshot !== undefined && !cephName.test(snapshot)) throw bad(`has an invalid snapshot '${snapshot}'`);
  const [pool, namespace, image] = parts.length === 3 ? parts : [parts[0], undefined, parts[1]];
  return {
    pool: pool!,
    image: image!,
    ...(namespace === undefined ? {} : { namespace }),
    ...(snapshot === undefined ? {} : { snapshot }),
  };
}

/** `pool[/namespace]/image[@snapshot]`, as rbd(8) writes it. */
export function rbdImageName(spec: RbdImageSpec): string {
  const path = [spec.pool, spec.namespace, spec.image].filter((part) => part !== undefined).join('/');
  return spec.snapshot === undefined ? path : `${path}@${spec.snapshot}`;
}

type RbdModule = typeof import('@tcmu/rbd');

/** @tcmu/rbd, or an EnvironmentError saying how to get it. */
export async function loadRbd(): Promise<RbdModule> {
  try {
    return await import('@tcmu/rbd');
  } catch (error) {
    throw new EnvironmentError(
      '@tcmu/rbd is not installed: serving rbd: images needs it',
      ExitCode.unavailable,
      {
        fix: 'npm install -g @tcmu/rbd next to tcmufile (it needs librbd1 and librados2: apt-get install librbd1 librados2)',
        cause: error,
      },
    );
  }
}

interface NativeFailure {
  readonly code: string;
  readonly syscall: string;
  readonly message: string;
}

/** What to tell the user about a failed RbdBackend.open(). */
export function rbdOpenError(error: unknown, request: RbdImageRequest): Error {
  const name = rbdImageName(request);
  const conf = request.conf ?? 'the default ceph.conf (/etc/ceph/ceph.conf)';
  const who = `client.${request.clientId ?? 'admin'}`;
  const errorName = (error as { name?: unknown })?.name;
  if (errorName === 'RbdAddonLoadError') {
    return new EnvironmentError((error as Error).message, ExitCode.unavailable, {
      fix: 'apt-get install librbd1 librados2',
      cause: error,
    });
  }
  if (errorName === 'RbdOptionError') return new UsageError((error as Error).message);
  if (errorName !== 'RbdNativeError') return error as Error;
  const { code, syscall, message } = error as NativeFailure;
  const fail = (text: string, exitCode: ExitCode, fix: string, Kind = ImageError) =>
    new Kind(text, exitCode, { fix, cause: error });
  if (syscall === 'rados_conf_read_file') {
    return fail(
      `cannot read the Ceph configuration ${conf} (${code})`,
      ExitCode.noImage,
      'Give a readable ceph.conf with --ceph-conf FILE.',
    );
  }
  if (syscall === 'rados_connect') {
    if (code === 'ETIMEDOUT') {
      return fail(
        `no Ceph monitor answered (mon_host of ${conf})`,
        ExitCode.unavailable,
        'Check that the cluster is up (`ceph -s` with the same --ceph-conf) and that mon_host is reachable from here.',
        EnvironmentError,
      );
    }
    if (code === 'ENOENT') {
      return fail(
        `no keyring for ${who} was found`,
        ExitCode.noPermission,
        'Give the keyring with --keyring FILE (and the user with --id NAME).',
        EnvironmentError,
      );
    }
    // EACCES: no such user, or a wrong key; EIO: a keyring librados cannot parse.
    if (code === 'EACCES' || code === 'EPERM') {
      return fail(
        `the cluster refused ${who} (${code})`,
        ExitCode.noPermission,
        'Check --id and --keyring: the key must be the one `ceph auth get` shows.',
        EnvironmentError,
      );
    }
    if (code === 'EIO') {
      return fail(
        `the keyring for ${who} cannot be parsed (EIO)`,
        ExitCode.noPermission,
        `Give a keyring as \`ceph auth get ${who}\` prints it with --keyring FILE.`,
        EnvironmentError,
      );
    }
  }
  if (syscall === 'rbd_lock_acquire' && code === 'EROFS') {
    return fail(
      `RBD image ${name} is served by another gateway (a live client holds its exclusive lock)`,
      ExitCode.inUse,
      'Serve an image from one gateway at a time. This one can take over once the other stops, or within ' +
        "the OSDs' watch timeout (about 30 s) after it dies: librbd then breaks its lock and blocklists it.",
    );
  }
  if (syscall === 'rados_ioctx_create' && code === 'ENOENT') {
    return fail(
      `pool '${request.pool}' does not exist`,
      ExitCode.noImage,
      `Create it: ceph osd pool create ${request.pool} && rbd pool init ${request.pool}`,
    );
  }
  if (syscall.startsWith('rbd_open') && code === 'ENOENT') {
    return request.snapshot === undefined
      ? fail(`RBD image ${name} does not exist`, ExitCode.noImage, `Create it: rbd create ${name} --size 1G`)
      : fail(
          `RBD image or snapshot ${name} does not exist`,
          ExitCode.noImage,
          `List the snapshots: rbd snap ls ${rbdImageName({ ...request, snapshot: undefined })}`,
        );
  }
  return new CliError(`cannot open RBD image ${name}: ${message}`, ExitCode.osError, { cause: error });
}

export interface RbdOpenRequest {
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** rados op and mount timeouts (seconds); default: the conf's, else @tcmu/rbd's 30 s. */
  readonly timeoutSeconds?: number;
}

/** Opens the image, the errors told the CLI way. */
export async function openRbdImage(request: RbdImageRequest, how: RbdOpenRequest): Promise<RbdBackend> {
  const { RbdBackend } = await loadRbd();
  try {
    return await RbdBackend.open({
      pool: request.pool,
      image: request.image,
      ...(request.namespace === undefined ? {} : { namespace: request.namespace }),
      ...(request.snapshot === undefined ? {} : { snapshot: request.snapshot }),
      ...(request.conf === undefined ? {} : { conf: request.conf }),
      ...(request.clientId === undefined ? {} : { clientId: request.clientId }),
      ...(request.keyring === undefined ? {} : { keyring: request.keyring }),
      ...(how.timeoutSeconds === undefined ? {} : { timeoutSeconds: how.timeoutSeconds }),
      blockSize: how.blockSize,
      readOnly: how.readOnly || request.snapshot !== undefined,
      // One writing gateway per image (docs/rbd.md "Several gateways"): the lock is taken at open
      // and kept, so a second gateway fails to start instead of sharing the image.
      exclusive: !how.readOnly && request.snapshot === undefined,
    });
  } catch (error) {
    throw rbdOpenError(error, request);
  }
}

/** One check of the Ceph client side; a failed one carries the exit code its error has. */
export interface RbdClientCheck extends EnvironmentCheck {
  readonly exitCode?: ExitCode;
}

/**
 * `tcmufile doctor rbd:POOL/IMAGE`: the Ceph client side, one check after the other (each
 * needs the one before): @tcmu/rbd and librbd load, the conf and keyring are readable, a
 * monitor answers and accepts the user, the pool and the image exist.
 */
export async function checkRbdClient(
  request: RbdImageRequest,
  timeoutSeconds = 10,
): Promise<RbdClientCheck[]> {
  const checks: RbdClientCheck[] = [];
  const pass = (id: string, detail: string) =>
    checks.push({ id, ok: true, required: true, detail, fix: undefined });
  const failWith = (id: string, error: CliError) =>
    checks.push({
      id,
      ok: false,
      required: true,
      detail: error.message,
      fix: error.fix,
      exitCode: error.exitCode,
    });
  const accepted = `the cluster answers and accepts client.${request.clientId ?? 'admin'}`;
  let rbd: RbdModule;
  try {
    rbd = await loadRbd();
    pass('rbd:librbd', `librbd ${rbd.librbdVersion()} loads (@tcmu/rbd)`);
  } catch (error) {
    failWith('rbd:librbd', toCliError(rbdOpenError(error, request)));
    return checks;
  }
  for (const [id, path, what] of [
    ['rbd:conf', request.conf, 'Ceph configuration'],
    ['rbd:keyring', request.keyring, 'keyring'],
  ] as const) {
    if (path === undefined) continue;
    try {
      await access(path, constants.R_OK);
      pass(id, `${what} ${path} is readable`);
    } catch {
      failWith(
        id,
        new ImageError(`${what} ${path} cannot be read`, ExitCode.noImage, {
          fix: `Check the path and its permissions (ls -l ${path}).`,
        }),
      );
      return checks;
    }
  }
  try {
    const backend = await openRbdImage(request, { blockSize: 512, readOnly: true, timeoutSeconds });
    const size = backend.size;
    await backend.close();
    pass('rbd:cluster', accepted);
    pass('rbd:image', `RBD image ${rbdImageName(request)} exists (${formatBytes(size)})`);
  } catch (error) {
    const told = toCliError(error);
    // The pool and image lookups come after the connection: failing there, the cluster answered.
    const syscall = (told.cause as { syscall?: unknown } | undefined)?.syscall;
    const reached =
      syscall === 'rados_ioctx_create' || (typeof syscall === 'string' && syscall.startsWith('rbd_open'));
    if (reached) pass('rbd:cluster', accepted);
    failWith(reached ? 'rbd:image' : 'rbd:cluster', told);
  }
  return checks;
}

const toCliError = (error: unknown): CliError =>
  error instanceof CliError ? error : new CliError(String(error), ExitCode.osError, { cause: error });

/** serve's prepareImage for an rbd: IMAGE: the image opened, its size in whole blocks. */
export async function prepareRbdImage(request: RbdImageRequest, how: RbdOpenRequest): Promise<PreparedImage> {
  const backend = await openRbdImage(request, how);
  const size = backend.blockCount * how.blockSize;
  if (size === 0) {
    await backend.close();
    throw new ImageError(
      `RBD image ${rbdImageName(request)} is smaller than one ${how.blockSize}-byte block`,
      ExitCode.badImage,
      {
        fix: `Grow it: rbd resize ${rbdImageName({ ...request, snapshot: undefined })} --size 1G`,
      },
    );
  }
  return { path: `${rbdPrefix}${rbdImageName(request)}`, size, created: false, fileSize: size, rbd: backend };
}
