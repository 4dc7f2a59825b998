/**
 * The brands behind every package's base error class (docs/architecture.md, "Public surface
 * and errors"). Each package's build inlines this file, so the packages still depend on
 * nothing, and each base class stays its package's own.
 */

/** The brands of an error instance, one per class in its chain: `<package>.<Class>`. */
const BRANDS = Symbol.for('@tcmu/error-brands');

/**
 * `instanceof` across copies of a package: true when `value` carries this class's brand.
 * @inline
 */
export type IsInstance = <T>(this: abstract new (...args: never[]) => T, value: unknown) => value is T;

/** instanceof by brand; `this` is the class asked (a subclass inherits it from the base). */
function hasBrand(this: { brand?: string }, value: unknown): boolean {
  // A subclass without a brand of its own (a user's) is checked by prototype.
  if (!Object.hasOwn(this, 'brand')) return Function.prototype[Symbol.hasInstance].call(this, value);
  const brands = (value as { [BRANDS]?: unknown } | null | undefined)?.[BRANDS];
  return Array.isArray(brands) && brands.includes(this.brand);
}

export const isInstance = hasBrand as unknown as IsInstance;

/** For the base constructor: records the brands of `newTarget`'s chain on `error`. */
export function recordBrands(error: Error, newTarget: { brand?: string }): void {
  const brands: string[] = [];
  for (let c = newTarget; c !== Error; c = Object.getPrototypeOf(c)) {
    if (Object.hasOwn(c, 'brand')) brands.push(c.brand!);
  }
  Object.defineProperty(error, BRANDS, { value: brands });
}

/** Makes `instanceof base` (and of its subclasses) ask the brand. */
export function brandInstanceof(base: abstract new (...args: never[]) => Error): void {
  Object.defineProperty(base, Symbol.hasInstance, { value: hasBrand });
}
