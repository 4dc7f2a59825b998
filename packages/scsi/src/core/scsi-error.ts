import { brandInstanceof, isInstance, recordBrands } from '../../../../internal/brand.js';

/**
 * Base of every error @tcmu/scsi throws. Branded: `instanceof` and `isInstance()` also
 * recognise an instance made by another copy of the package (its ESM and CJS builds, or
 * two installed versions), where a prototype check alone fails.
 */
export class ScsiError extends Error {
  /** Like instanceof, across copies of the package. */
  static readonly isInstance = isInstance;
  /** `<package>.<Class>`; every subclass declares its own. */
  static readonly brand: string = '@tcmu/scsi.ScsiError';
  override name = 'ScsiError';

  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    recordBrands(this, new.target);
  }
}
brandInstanceof(ScsiError);
