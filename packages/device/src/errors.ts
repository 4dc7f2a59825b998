import { brandInstanceof, isInstance, recordBrands } from '../../../internal/brand.js';

/**
 * Base of every error @tcmu/device throws. Branded: `instanceof` and `isInstance()` also
 * recognise an instance made by another copy of the package (its ESM and CJS builds, or
 * two installed versions), where a prototype check alone fails.
 */
export class DeviceError extends Error {
  /** Like instanceof, across copies of the package. */
  static readonly isInstance = isInstance;
  /** `<package>.<Class>`; every subclass declares its own. */
  static readonly brand: string = '@tcmu/device.DeviceError';
  override name = 'DeviceError';

  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    recordBrands(this, new.target);
  }
}
brandInstanceof(DeviceError);

/** An option passed to openDevice (or a Target) is invalid; nothing was touched. */
export class InvalidDeviceOptionError extends DeviceError {
  static override readonly brand: string = '@tcmu/device.InvalidDeviceOptionError';
  override name = 'InvalidDeviceOptionError';
  readonly option: string;

  constructor(option: string, message: string) {
    super(`invalid option '${option}': ${message}`);
    this.option = option;
  }
}

/** The steps openDevice performs, in order; a failure names the step it happened in. */
export type SetupStep = 'backstore' | 'uio' | 'ring' | 'target' | 'lun' | 'disk' | 'node' | 'queue-depth';

/**
 * openDevice failed at `step`; every earlier step was undone. When undoing
 * also failed, `rollbackErrors` lists what could not be removed.
 */
export class DeviceSetupError extends DeviceError {
  static override readonly brand: string = '@tcmu/device.DeviceSetupError';
  override name = 'DeviceSetupError';
  readonly step: SetupStep;
  readonly rollbackErrors: readonly unknown[];

  constructor(step: SetupStep, cause: unknown, rollbackErrors: readonly unknown[] = []) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const leftovers =
      rollbackErrors.length > 0 ? ` (and ${rollbackErrors.length} rollback step(s) failed)` : '';
    super(`device setup failed at step '${step}': ${reason}${leftovers}`, { cause });
    this.step = step;
    this.rollbackErrors = rollbackErrors;
  }
}

/** The device is closed (or closing) and cannot do this. */
export class DeviceClosedError extends DeviceError {
  static override readonly brand: string = '@tcmu/device.DeviceClosedError';
  override name = 'DeviceClosedError';
}

/** close() could not remove everything; `errors` holds each failed teardown step. */
export class TeardownError extends DeviceError {
  static override readonly brand: string = '@tcmu/device.TeardownError';
  override name = 'TeardownError';
  readonly errors: readonly unknown[];

  constructor(errors: readonly unknown[]) {
    const first = errors[0] instanceof Error ? errors[0].message : String(errors[0]);
    super(`teardown left ${errors.length} object(s) behind; first: ${first}`, { cause: errors[0] });
    this.errors = errors;
  }
}

/** A handler threw or returned something that is not a CommandResult (a bug in user code). */
export class HandlerError extends DeviceError {
  static override readonly brand: string = '@tcmu/device.HandlerError';
  override name = 'HandlerError';
}

/**
 * openDevice found this name's disk left by an earlier process, but it does not serve
 * the same data: `differences` names each mismatch (size, block size, serial, source).
 * Nothing was changed; serve it under another name, or remove the old one
 * (`tcmufile cleanup` once its owner is gone).
 */
export class ReattachMismatchError extends DeviceError {
  static override readonly brand: string = '@tcmu/device.ReattachMismatchError';
  override name = 'ReattachMismatchError';
  readonly differences: readonly string[];

  constructor(name: string, differences: readonly string[]) {
    super(
      `device '${name}' exists from an earlier process but serves something else: ${differences.join('; ')}`,
    );
    this.differences = differences;
  }
}

/** Device.resize() cannot do what was asked (see `reason`); the device keeps its size. */
export class DeviceResizeError extends DeviceError {
  static override readonly brand: string = '@tcmu/device.DeviceResizeError';
  override name = 'DeviceResizeError';
  constructor(
    message: string,
    readonly reason: 'shrink' | 'unsupported' | 'invalid' | 'state' | 'kernel',
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
