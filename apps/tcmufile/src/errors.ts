import { brandInstanceof, isInstance, recordBrands } from '../../../internal/brand.js';

/**
 * Errors the CLI reports to the user, and the mapping from any thrown value to an exit code.
 *
 * Exit codes follow BSD sysexits(3) so scripts can tell a usage mistake from a missing kernel
 * module or a busy name without parsing messages.
 */
export const ExitCode = {
  ok: 0,
  /** A bug or an error we did not classify. */
  internal: 1,
  /** EX_USAGE: bad arguments or sizes. */
  usage: 64,
  /** EX_DATAERR: the image does not fit the request (smaller than --size, size not a block multiple). */
  badImage: 65,
  /** EX_NOINPUT: the image is missing or unreadable. */
  noImage: 66,
  /** EX_UNAVAILABLE: a kernel module (target_core_user, tcm_loop, ...) is missing. */
  unavailable: 69,
  /** EX_OSERR: the kernel or the filesystem refused an operation. */
  osError: 71,
  /** EX_CANTCREAT: the image or the device node cannot be created. */
  cannotCreate: 73,
  /** EX_TEMPFAIL: the volume name (or HBA/LUN) is already in use. */
  inUse: 75,
  /** EX_NOPERM: not running as root. */
  noPermission: 77,
  /** EX_CONFIG: configfs is not mounted. */
  config: 78,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * An error meant for the user: a message, an optional fix, and the exit code. Branded: `instanceof` and `isInstance()` also
 * recognise an instance made by another copy of the package (its ESM and CJS builds, or
 * two installed versions), where a prototype check alone fails.
 */
export class CliError extends Error {
  /** Like instanceof, across copies of the package. */
  static readonly isInstance = isInstance;
  /** `<package>.<Class>`; every subclass declares its own. */
  static readonly brand: string = 'tcmufile.CliError';
  override name = 'CliError';

  readonly exitCode: ExitCode;
  readonly fix: string | undefined;

  constructor(message: string, exitCode: ExitCode, options: { fix?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.exitCode = exitCode;
    this.fix = options.fix;
    recordBrands(this, new.target);
  }
}
brandInstanceof(CliError);

/**
 * A command line the CLI cannot accept (unknown option, bad size, bad name...). Told as one
 * line, `tcmufile serve: <message>; <fix>`: the fix is a lower-case clause, by default the
 * pointer to the command's help.
 */
export class UsageError extends CliError {
  static override readonly brand: string = 'tcmufile.UsageError';
  override name = 'UsageError';
  /** The command whose arguments are wrong; undefined for the top level. */
  readonly command: string | undefined;
  readonly #givenFix: string | undefined;
  constructor(message: string, options: { fix?: string; command?: string } = {}) {
    super(message, ExitCode.usage, { fix: options.fix ?? `see ${helpCommand(options.command)}` });
    this.command = options.command;
    this.#givenFix = options.fix;
  }

  /** This error as one of `command`'s (value parsers such as parseSize do not know theirs). */
  inCommand(command: string): UsageError {
    return this.command === undefined ? new UsageError(this.message, { fix: this.#givenFix, command }) : this;
  }
}

function helpCommand(command: string | undefined): string {
  return command === undefined ? 'tcmufile --help' : `tcmufile ${command} --help`;
}

/** The image file cannot be served as asked. */
export class ImageError extends CliError {
  static override readonly brand: string = 'tcmufile.ImageError';
  override name = 'ImageError';
}

/** The machine cannot host a TCMU device (not root, configfs or a module missing). */
export class EnvironmentError extends CliError {
  static override readonly brand: string = 'tcmufile.EnvironmentError';
  override name = 'EnvironmentError';
}

interface ErrorLike {
  code?: unknown;
  errno?: unknown;
  name?: unknown;
  cause?: unknown;
}

/**
 * Library errors are classified by their class name and machine-readable code, so this module
 * needs no import of the libraries; errno codes cover raw node:fs failures. Wrappers such as
 * DeviceSetupError are looked through via `cause`.
 */
const exitCodeByErrorName: Record<string, ExitCode> = {
  InvalidNameError: ExitCode.usage,
  InvalidOptionError: ExitCode.usage,
  InvalidDeviceOptionError: ExitCode.usage,
  InUseError: ExitCode.inUse,
  AlreadyExistsError: ExitCode.inUse,
  // The name's disk, left by an earlier serve, holds another image.
  ReattachMismatchError: ExitCode.inUse,
  // The kernel refused the new size, or the device was not serving (a resize during close).
  DeviceResizeError: ExitCode.osError,
};

const exitCodeByErrno: Record<string, ExitCode> = {
  EACCES: ExitCode.noPermission,
  EPERM: ExitCode.noPermission,
  ENOENT: ExitCode.noImage,
  EISDIR: ExitCode.noImage,
  EEXIST: ExitCode.inUse,
  EBUSY: ExitCode.inUse,
  ENOSPC: ExitCode.cannotCreate,
  EROFS: ExitCode.cannotCreate,
};

/** @tcmu/scsi's FileBackendError codes (prepareImage catches most of these first). */
const exitCodeByFileBackendCode: Record<string, ExitCode> = {
  INVALID_OPTIONS: ExitCode.usage,
  NOT_FOUND: ExitCode.noImage,
  OPEN_FAILED: ExitCode.noImage,
  NOT_A_FILE: ExitCode.noImage,
  EMPTY: ExitCode.badImage,
  SIZE_NOT_BLOCK_MULTIPLE: ExitCode.badImage,
  LOCKED: ExitCode.inUse,
};

/** The process exit code for a thrown value. */
export function exitCodeFor(error: unknown): ExitCode {
  let current: unknown = error;
  // A cause chain is short; the bound only guards against a cycle.
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    if (current instanceof CliError) return current.exitCode;
    const { code, errno, name, cause } = current as ErrorLike;
    if (typeof name === 'string' && name in exitCodeByErrorName) return exitCodeByErrorName[name]!;
    if (name === 'FileBackendError' && typeof code === 'string' && code in exitCodeByFileBackendCode) {
      return exitCodeByFileBackendCode[code]!;
    }
    const errnoCode = typeof errno === 'string' ? errno : code;
    if (typeof errnoCode === 'string' && errnoCode in exitCodeByErrno) return exitCodeByErrno[errnoCode]!;
    if (name === 'KernelError') return ExitCode.osError;
    current = cause;
  }
  return ExitCode.internal;
}

/** "tcmufile: <message>" plus the fix on its own line, for stderr; a usage error in one line. */
export function describeError(error: unknown): string {
  if (error instanceof UsageError) {
    return `tcmufile${error.command === undefined ? '' : ` ${error.command}`}: ${error.message}; ${error.fix}`;
  }
  const message = error instanceof Error ? error.message : String(error);
  const lines = [`tcmufile: ${message}`];
  const fix = error instanceof CliError ? error.fix : fixOf(error);
  if (fix) lines.push(`  fix: ${fix}`);
  if (exitCodeFor(error) === ExitCode.internal && error instanceof Error && error.stack) {
    lines.push(error.stack.split('\n').slice(1, 6).join('\n'));
  }
  return lines.join('\n');
}

function fixOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const fix = (error as { fix?: unknown }).fix;
  return typeof fix === 'string' ? fix : undefined;
}
