/**
 * The packages' public surface (issue 10 item 4): no exported name means two different
 * things in two packages, and every error class is branded, so `instanceof` and
 * `isInstance` hold across copies of a package (its ESM and CJS builds, two versions).
 */
import ts from 'typescript';
import { describe, expect, it, vi } from 'vitest';

const ENTRIES = {
  '@tcmu/scsi': 'packages/scsi/src/index.ts',
  '@tcmu/scsi/node': 'packages/scsi/src/node.ts',
  '@tcmu/configfs': 'packages/configfs/src/index.ts',
  '@tcmu/configfs/testing': 'packages/configfs/src/testing/index.ts',
  '@tcmu/ring': 'packages/ring/src/index.ts',
  '@tcmu/ring/testing': 'packages/ring/src/testing/index.ts',
  '@tcmu/device': 'packages/device/src/index.ts',
  '@tcmu/rbd': 'packages/rbd/src/index.ts',
  tcmufile: 'apps/tcmufile/src/index.ts',
} as const;

describe('exported names', () => {
  it('no name is exported by two packages for two different declarations', () => {
    const program = ts.createProgram(Object.values(ENTRIES), {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      customConditions: ['@tcmu/source'],
      noEmit: true,
    });
    const checker = program.getTypeChecker();
    const declarations = new Map<string, Map<string, string>>(); // name -> declaration -> entry
    for (const [entry, file] of Object.entries(ENTRIES)) {
      const source = program.getSourceFile(file);
      if (!source) throw new Error(`${entry}: ${file} is not in the program`);
      const module = checker.getSymbolAtLocation(source)!;
      for (const exported of checker.getExportsOfModule(module)) {
        const target = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
        const where = target.declarations?.[0]?.getSourceFile().fileName ?? entry;
        const seen = declarations.get(exported.name) ?? new Map<string, string>();
        seen.set(where, entry);
        declarations.set(exported.name, seen);
      }
    }
    const collisions = [...declarations]
      .filter(([, where]) => where.size > 1)
      .map(([name, where]) => `${name}: ${[...where.values()].join(', ')}`);
    expect(collisions).toEqual([]);
    expect(declarations.size).toBeGreaterThan(150); // it did read the packages
  });
});

type ErrorClass = (new (
  ...args: never[]
) => Error) & { brand?: string; isInstance?: (v: unknown) => boolean };

async function errorClasses(): Promise<Map<string, ErrorClass>> {
  const found = new Map<string, ErrorClass>();
  for (const [entry, file] of Object.entries(ENTRIES)) {
    // The root does not depend on the CLI's package: import its library by path.
    const module = (await import(entry === 'tcmufile' ? `../${file}` : entry)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(module)) {
      if (typeof value === 'function' && value.prototype instanceof Error)
        found.set(name, value as ErrorClass);
    }
  }
  return found;
}

/** Stands for any argument: any property, call or conversion gives something usable. */
const anything: unknown = new Proxy(() => {}, {
  get: (_, key) => (key === Symbol.toPrimitive ? () => 'x' : key === Symbol.iterator ? undefined : anything),
  apply: () => anything,
});
/** An instance of each class, whatever its constructor wants (the base sets the brands). */
const instanceOf = (cls: ErrorClass): Error => Reflect.construct(cls, ['x', anything, anything]) as Error;

describe('error classes', () => {
  it('each has a brand of its own, named after its package and class', async () => {
    const classes = await errorClasses();
    expect(classes.size).toBeGreaterThan(30);
    const brands = new Set<string>();
    for (const [name, cls] of classes) {
      expect(Object.hasOwn(cls, 'brand'), name).toBe(true);
      expect(cls.brand, name).toMatch(new RegExp(`^(@tcmu/[a-z]+|tcmufile)\\.${name}$`));
      expect(brands.has(cls.brand!), name).toBe(false);
      brands.add(cls.brand!);
    }
  });

  it('a second copy of every package recognises the first copy’s errors, and only those of that class', async () => {
    const first = await errorClasses();
    vi.resetModules();
    const second = await errorClasses();
    expect(second.get('BackendIoError')).not.toBe(first.get('BackendIoError')); // really two copies
    let checked = 0;
    for (const [name, cls] of first) {
      const error = instanceOf(cls);
      const twin = second.get(name)!;
      expect(error instanceof twin, name).toBe(true);
      expect(twin.isInstance!(error), name).toBe(true);
      for (const [other, otherClass] of second) {
        if (other === name) continue;
        // Only its own class and its bases (by prototype, in the first copy): never a sibling.
        const isBase = Object.prototype.isPrototypeOf.call(first.get(other)!.prototype, error);
        expect(error instanceof otherClass, `${name} vs ${other}`).toBe(isBase);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it('a subclass without a brand of its own is checked by prototype', async () => {
    const { BackendIoError } = await import('@tcmu/scsi');
    class MyError extends BackendIoError {}
    expect(new MyError('x') instanceof MyError).toBe(true);
    expect(new BackendIoError('x') instanceof MyError).toBe(false);
    expect(new MyError('x') instanceof BackendIoError).toBe(true);
    expect(MyError.isInstance(new MyError('x'))).toBe(true);
  });
});
