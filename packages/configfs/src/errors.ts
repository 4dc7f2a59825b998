import { brandInstanceof, isInstance, recordBrands } from '../../../internal/brand.js';

/**
 * Base of every error @tcmu/configfs throws; `code` is stable and machine-readable. Branded: `instanceof` and `isInstance()` also
 * recognise an instance made by another copy of the package (its ESM and CJS builds, or
 * two installed versions), where a prototype check alone fails.
 */
export class ConfigfsError extends Error {
  /** Like instanceof, across copies of the package. */
  static readonly isInstance = isInstance;
  /** `<package>.<Class>`; every subclass declares its own. */
  static readonly brand: string = '@tcmu/configfs.ConfigfsError';
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    recordBrands(this, new.target);
  }
}
brandInstanceof(ConfigfsError);

/** A name, WWN, IQN, portal or other identifier was rejected before touching the filesystem. */
export class InvalidNameError extends ConfigfsError {
  static override readonly brand: string = '@tcmu/configfs.InvalidNameError';
  constructor(
    readonly kind: string,
    readonly value: string,
    readonly reason: string,
  ) {
    super('INVALID_NAME', `invalid ${kind} ${JSON.stringify(value)}: ${reason}`);
  }
}

/** An option value (size, block size, control key, attribute) was rejected before any write. */
export class InvalidOptionError extends ConfigfsError {
  static override readonly brand: string = '@tcmu/configfs.InvalidOptionError';
  constructor(
    readonly option: string,
    readonly reason: string,
  ) {
    super('INVALID_OPTION', `invalid option ${option}: ${reason}`);
  }
}

export class NotFoundError extends ConfigfsError {
  static override readonly brand: string = '@tcmu/configfs.NotFoundError';
  constructor(
    readonly what: string,
    readonly path?: string,
  ) {
    super('NOT_FOUND', path ? `${what} not found (${path})` : `${what} not found`);
  }
}

export class AlreadyExistsError extends ConfigfsError {
  static override readonly brand: string = '@tcmu/configfs.AlreadyExistsError';
  constructor(
    readonly what: string,
    readonly path: string,
  ) {
    super('ALREADY_EXISTS', `${what} already exists (${path})`);
  }
}

/** The object is still referenced (LUN links, a live owner) and cannot be removed. */
export class InUseError extends ConfigfsError {
  static override readonly brand: string = '@tcmu/configfs.InUseError';
  constructor(
    readonly what: string,
    readonly users: readonly string[],
  ) {
    super('IN_USE', `${what} is in use by ${users.join(', ')}`);
  }
}

export class TimeoutError extends ConfigfsError {
  static override readonly brand: string = '@tcmu/configfs.TimeoutError';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super('TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}`);
  }
}

/**
 * A filesystem operation on configfs/sysfs failed: the kernel refused it (EINVAL,
 * EBUSY, EPERM, ENODEV...) or the path is missing. `errno` is Node's error code.
 */
export class KernelError extends ConfigfsError {
  static override readonly brand: string = '@tcmu/configfs.KernelError';
  constructor(
    readonly operation: string,
    readonly path: string,
    readonly errno: string | undefined,
    cause: unknown,
  ) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super('KERNEL_ERROR', `${operation} ${path} failed: ${errno ?? detail}`, { cause });
  }
}

/**
 * Creating several objects failed midway. `cause` is the original failure;
 * `rollbackErrors` lists anything the rollback itself could not undo.
 */
export class RollbackError extends ConfigfsError {
  static override readonly brand: string = '@tcmu/configfs.RollbackError';
  constructor(
    message: string,
    cause: unknown,
    readonly rollbackErrors: readonly unknown[],
  ) {
    super('ROLLBACK_INCOMPLETE', message, { cause });
  }
}

/** Node's errno code of a failed fs call, if any. */
export function errnoOf(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
