import { brandInstanceof, isInstance, recordBrands } from '../../../internal/brand.js';

/**
 * Base of every error @tcmu/ring throws. Branded: `instanceof` and `isInstance()` also
 * recognise an instance made by another copy of the package (its ESM and CJS builds, or
 * two installed versions), where a prototype check alone fails.
 */
export class RingError extends Error {
  /** Like instanceof, across copies of the package. */
  static readonly isInstance = isInstance;
  /** `<package>.<Class>`; every subclass declares its own. */
  static readonly brand: string = '@tcmu/ring.RingError';
  override name = 'RingError';

  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    recordBrands(this, new.target);
  }
}
brandInstanceof(RingError);

/** A system call failed in the native addon (open, mmap, poll, read, write...). */
export class NativeError extends RingError {
  static override readonly brand: string = '@tcmu/ring.NativeError';
  override name = 'NativeError';
  /** e.g. 'ENOENT', or 'EOF' when the peer of a socketpair went away */
  readonly code: string;
  /** negative errno, Node style (undefined for EOF) */
  readonly errno: number | undefined;
  readonly syscall: string;
  readonly path: string | undefined;

  constructor(
    message: string,
    fields: { code: string; errno?: number; syscall: string; path?: string },
    cause?: unknown,
  ) {
    super(message, { cause });
    this.code = fields.code;
    this.errno = fields.errno;
    this.syscall = fields.syscall;
    this.path = fields.path;
  }

  /** Wraps an error thrown or reported by the addon; leaves other errors as they are. */
  static from(error: unknown): unknown {
    if (typeof error !== 'object' || error === null || RingError.isInstance(error)) return error;
    const { code, errno, syscall, path, message } = error as Record<string, unknown>;
    if (typeof code !== 'string' || typeof syscall !== 'string') return error;
    return new NativeError(
      String(message),
      {
        code,
        syscall,
        ...(typeof errno === 'number' ? { errno } : {}),
        ...(typeof path === 'string' ? { path } : {}),
      },
      error,
    );
  }
}

/** The compiled addon could not be loaded. */
export class AddonLoadError extends RingError {
  static override readonly brand: string = '@tcmu/ring.AddonLoadError';
  override name = 'AddonLoadError';
}

/** The mailbox does not describe a ring this package can serve (version, sizes). */
export class MailboxError extends RingError {
  static override readonly brand: string = '@tcmu/ring.MailboxError';
  override name = 'MailboxError';
}

/**
 * The ring contents violate the protocol (entry length 0 or past cmd_head,
 * CDB or iovec outside its area...). The ring stops safely; nothing outside
 * the mapping was touched.
 */
export class CorruptRingError extends RingError {
  static override readonly brand: string = '@tcmu/ring.CorruptRingError';
  override name = 'CorruptRingError';
  /** byte offset of the offending entry inside the command ring */
  readonly entryOffset: number;

  constructor(message: string, entryOffset: number) {
    super(`${message} (entry at ring offset ${entryOffset})`);
    this.entryOffset = entryOffset;
  }
}

/** The ring is closed (or closing) and cannot accept this operation. */
export class RingClosedError extends RingError {
  static override readonly brand: string = '@tcmu/ring.RingClosedError';
  override name = 'RingClosedError';
}

/** AbortSignal reason for commands a ring reset took away (TcmuRing.recover). */
export class RingResetError extends RingError {
  static override readonly brand: string = '@tcmu/ring.RingResetError';
  override name = 'RingResetError';
}

/** The caller used the API wrongly (double completion, bad option...). */
export class RingUsageError extends RingError {
  static override readonly brand: string = '@tcmu/ring.RingUsageError';
  override name = 'RingUsageError';
}

/** AbortSignal reason for commands the kernel aborted through a TMR entry. */
export class CommandAbortedError extends RingError {
  static override readonly brand: string = '@tcmu/ring.CommandAbortedError';
  override name = 'CommandAbortedError';
  readonly tmrType: number;

  constructor(commandId: number, tmrType: number) {
    super(`command ${commandId} was aborted by the kernel (TMR type ${tmrType})`);
    this.tmrType = tmrType;
  }
}
