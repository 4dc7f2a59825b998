/** The brands of an error instance, one per class in its chain: `<package>.<Class>`. */
const BRANDS = Symbol.for('@tcmu/error-brands');

/**
 * Base of every error @tcmu/scsi throws. Branded: `instanceof` and `isInstance()` also
 * recognise an instance made by another copy of the package (its ESM and CJS builds, or
 * two installed versions), where a prototype check alone fails.
 */
export class ScsiError extends Error {
  /** `<package>.<Class>`; every subclass declares its own. */
  static readonly brand: string = '@tcmu/scsi.ScsiError';
  override name = 'ScsiError';

  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    const brands: string[] = [];
    for (let c: { brand?: string } = new.target; c !== Error; c = Object.getPrototypeOf(c)) {
      if (Object.hasOwn(c, 'brand')) brands.push(c.brand!);
    }
    Object.defineProperty(this, BRANDS, { value: brands });
  }

  /** Like instanceof, across copies of the package. */
  static isInstance<T>(this: abstract new (...args: never[]) => T, value: unknown): value is T {
    // A subclass without a brand of its own (a user's) is checked by prototype.
    if (!Object.hasOwn(ScsiError, 'brand'))
      return Function.prototype[Symbol.hasInstance].call(ScsiError, value);
    const brands = (value as { [BRANDS]?: unknown } | null | undefined)?.[BRANDS];
    return Array.isArray(brands) && brands.includes((ScsiError as unknown as { brand: string }).brand);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return ScsiError.isInstance(value);
  }
}
