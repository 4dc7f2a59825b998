import { ScsiError } from '@tcmu/scsi';

/**
 * Base of every error @tcmu/rbd throws. It extends @tcmu/scsi's ScsiError for its brand
 * mechanism: `instanceof` and `isInstance()` hold across copies of the package (its ESM and
 * CJS builds, two installed versions). I/O failures reach the unit as @tcmu/scsi's
 * BackendIoError, whose `cause` is an RbdNativeError.
 */
export class RbdError extends ScsiError {
  static override readonly brand: string = '@tcmu/rbd.RbdError';
  override name = 'RbdError';
}

/** A librados or librbd call failed: `code` and `errno` come from its negative return value. */
export class RbdNativeError extends RbdError {
  static override readonly brand: string = '@tcmu/rbd.RbdNativeError';
  override name = 'RbdNativeError';
  /** e.g. 'ETIMEDOUT' (an unreachable OSD or mon past the op timeout), 'ENOENT', 'ESHUTDOWN' (blocklisted) */
  readonly code: string;
  /** negative errno, Node style: what librbd returned */
  readonly errno: number;
  /** the librados/librbd function, e.g. 'rados_connect', 'rbd_aio_write2' */
  readonly syscall: string;

  constructor(
    message: string,
    fields: { code: string; errno: number; syscall: string },
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = fields.code;
    this.errno = fields.errno;
    this.syscall = fields.syscall;
  }

  /** Wraps an error the addon threw or reported; other errors are returned as they are. */
  static from(error: unknown): unknown {
    if (typeof error !== 'object' || error === null || RbdError.isInstance(error)) return error;
    const { code, errno, syscall, message } = error as Record<string, unknown>;
    if (typeof code !== 'string' || typeof errno !== 'number' || typeof syscall !== 'string') return error;
    return new RbdNativeError(String(message), { code, errno, syscall }, { cause: error });
  }
}

/** The compiled addon (or librbd.so.1 / librados.so.2 under it) could not be loaded. */
export class RbdAddonLoadError extends RbdError {
  static override readonly brand: string = '@tcmu/rbd.RbdAddonLoadError';
  override name = 'RbdAddonLoadError';
}

/** The backend is closed (or closing) and takes no more calls. */
export class RbdClosedError extends RbdError {
  static override readonly brand: string = '@tcmu/rbd.RbdClosedError';
  override name = 'RbdClosedError';
}

/** An option of RbdBackend.open() is missing or out of range. */
export class RbdOptionError extends RbdError {
  static override readonly brand: string = '@tcmu/rbd.RbdOptionError';
  override name = 'RbdOptionError';
}
