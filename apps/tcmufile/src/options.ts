/**
 * Option tables: one table per command drives both its argument parser and its `--help`, so
 * the two cannot drift.
 */
import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

/** A switch: present or not. */
export interface FlagSpec {
  readonly kind: 'flag';
  /** One-letter alias: `r` for `-r`. */
  readonly short?: string;
  readonly help: string;
}

/** An option that takes a value. */
export interface ValueSpec<T> {
  readonly kind: 'value';
  readonly short?: string;
  /** The value's name in the help and in errors: SIZE, NAME, native|sync|async. */
  readonly value: string;
  /** A valid value, for the "needs a value" error. */
  readonly example: string;
  readonly help: string;
  /** Text to value; throws a UsageError naming `flag` (`--size`) when the text is bad. */
  readonly parse: (text: string, flag: string) => T;
  /** The value when the option is absent. */
  readonly default: T;
  /** How the help names a default that is not a plain value ("IMAGE's size"). */
  readonly defaultHelp?: string;
}

export type OptionSpec = FlagSpec | ValueSpec<unknown>;
/** Long option name (without `--`) to its spec, in help order. */
export type OptionTable = Readonly<Record<string, OptionSpec>>;
export type OptionValues<T extends OptionTable> = {
  [K in keyof T]: T[K] extends ValueSpec<infer V> ? V : boolean;
};

export function flag(spec: Omit<FlagSpec, 'kind'>): FlagSpec {
  return { kind: 'flag', ...spec };
}

export function option<T>(spec: Omit<ValueSpec<T>, 'kind'>): ValueSpec<T> {
  return { kind: 'value', ...spec };
}

/** `-h, --help`, in every command's table. */
export const helpFlag = flag({ short: 'h', help: 'show this help' });

/** An operand (positional argument) a command requires. */
export interface Operand {
  /** Its name in the usage line: IMAGE, NAME. */
  readonly name: string;
  /** A command line that gives it, for the error when it is missing. */
  readonly example: string;
  /** May be left out (shown as [NAME]); only the last operands may be (serve's IMAGE: its build requires it without --config). */
  readonly optional?: boolean;
}

export interface ParsedOptions<T extends OptionTable> {
  values: OptionValues<T>;
  operands: string[];
}

/**
 * Parses `args` against `table`: every option must be in it, a value option needs a value, a
 * flag takes none, and exactly `operands` positionals are given. Throws a one-line UsageError.
 */
export function parseOptions<T extends OptionTable>(
  table: T,
  args: readonly string[],
  operands: readonly Operand[],
): ParsedOptions<T> {
  // strict: false, then checked here: node's strict errors run over several lines and name no
  // alternative. Every case strict mode refuses is refused below.
  const { tokens } = parseArgs({
    args: [...args],
    options: parseArgsConfig(table),
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table))
    values[name] = spec.kind === 'flag' ? false : spec.default;
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      positionals.push(token.value);
      continue;
    }
    const spec = specOf(table, token.name, token.rawName);
    if (spec === undefined) throw unknownOption(token.rawName, table);
    if (spec.kind === 'flag') {
      if (token.value !== undefined)
        throw new UsageError(`${token.rawName} takes no value, got '${token.value}'`);
      values[token.name] = true;
      continue;
    }
    // node takes the next argument whatever it is; like strict mode, refuse one that looks like
    // an option (`--size --raw`), but let a negative number through for its own error (`-s -1G`).
    const text = token.value;
    if (text === undefined || (!token.inlineValue && text.startsWith('-') && !/^-\d/.test(text))) {
      const before = text === undefined ? '' : ` before ${text}`;
      const dash = text === undefined ? '' : `, or --${token.name}=VALUE for a value starting with '-'`;
      throw new UsageError(`${token.rawName} needs a value (${spec.value})${before}`, {
        fix: `e.g. --${token.name} ${spec.example}${dash}`,
      });
    }
    values[token.name] = spec.parse(text, `--${token.name}`);
  }
  for (const [index, operand] of operands.entries()) {
    if (operand.optional && positionals[index] === undefined) continue;
    if (positionals[index] === undefined || positionals[index] === '') {
      throw new UsageError(`no ${operand.name} given`, { fix: `e.g. ${operand.example}` });
    }
  }
  if (positionals.length > operands.length) {
    throw new UsageError(`unexpected argument '${positionals[operands.length]}'`);
  }
  return { values: values as OptionValues<T>, operands: positionals };
}

/** True when `args` ask for the help (`-h`/`--help` before any `--`), whatever else they hold. */
export function asksForHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  const options = end === -1 ? args : args.slice(0, end);
  return options.includes('--help') || options.includes(`-${helpFlag.short}`);
}

function parseArgsConfig(table: OptionTable) {
  return Object.fromEntries(
    Object.entries(table).map(([name, spec]) => [
      name,
      {
        type: spec.kind === 'flag' ? ('boolean' as const) : ('string' as const),
        ...(spec.short === undefined ? {} : { short: spec.short }),
      },
    ]),
  );
}

/** The spec of a token node recognised; undefined for an option not in the table (`-x`, `--sise`). */
function specOf(table: OptionTable, name: string, rawName: string): OptionSpec | undefined {
  if (!Object.hasOwn(table, name)) return undefined;
  const spec = table[name]!;
  return rawName === `--${name}` || rawName === `-${spec.short}` ? spec : undefined;
}

function unknownOption(rawName: string, table: OptionTable): UsageError {
  const guess = rawName.startsWith('--') ? closest(rawName.slice(2), Object.keys(table)) : undefined;
  return new UsageError(
    `unknown option ${rawName}${guess === undefined ? '' : ` (did you mean --${guess}?)`}`,
  );
}

/** The candidate within two edits of `word` (a typo), the nearest first; undefined if none is. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance, one row at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      row.push(Math.min(previous[j]! + 1, row[j - 1]! + 1, substitution));
    }
    previous = row;
  }
  return previous[b.length]!;
}

/** Help text: option labels in a column, their help wrapped beside them. */
const helpColumn = 26;
export const helpWidth = 80;

/** The `Options:` lines of a table. */
export function formatOptions(table: OptionTable): string[] {
  return Object.entries(table).flatMap(([name, spec]) => {
    const alias = spec.short === undefined ? '    ' : `-${spec.short}, `;
    const label = `  ${alias}--${name}${spec.kind === 'value' ? ` ${spec.value}` : ''}`;
    const shown = spec.kind === 'value' ? (spec.defaultHelp ?? defaultText(spec.default)) : undefined;
    return columns(label, shown === undefined ? spec.help : `${spec.help} (default: ${shown})`);
  });
}

function defaultText(value: unknown): string | undefined {
  return value === undefined ? undefined : String(value);
}

/** `label` then `text` wrapped at `column`; on the next line when the label is too long. */
export function columns(label: string, text: string, column = helpColumn): string[] {
  const lines = wrap(text, helpWidth - column);
  const indent = ' '.repeat(column);
  if (label.length + 2 > column) return [label, ...lines.map((line) => indent + line)];
  return lines.map((line, index) => (index === 0 ? label.padEnd(column) : indent) + line);
}

/** Greedy word wrap; a word longer than `width` gets a line of its own. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}
