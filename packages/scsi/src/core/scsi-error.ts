/** The brands of an error instance, one per class in its chain: `<package>.<Class>`. */
const BRANDS = Symbol.for('@tcmu/error-brands');

/** instanceof by brand; `this` is the class asked (a subclass inherits it from the base). */
function hasBrand(this: { brand?: string }, value: unknown): boolean {
  // A subclass without a brand of its own (a user's) is checked by prototype.
  if (!Object.hasOwn(this, 'brand')) return Function.prototype[Symbol.hasInstance].call(this, value);
  const brands = (value as { [BRANDS]?: unknown } | null | undefined)?.[BRANDS];
  return Array.isArray(brands) && brands.includes(this.brand);
}

/**
 * Base of every error @tcmu/scsi throws. Branded: `instanceof` and `isInstance()` also
 * recognise an instance made by another copy of the package (its ESM and CJS builds, or
 * two installed versions), where a prototype check alone fails.
 */
export class ScsiError extends Error {
  /** Like instanceof, across copies of the package. */
  static readonly isInstance = hasBrand as unknown as <T>(
    this: abstract new (
      ...args: never[]
    ) => T,
    value: unknown,
  ) => value is T;
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
}
// instanceof asks the brand too.
Object.defineProperty(ScsiError, Symbol.hasInstance, { value: hasBrand });
