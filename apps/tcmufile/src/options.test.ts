import { describe, expect, it } from 'vitest';
import { UsageError } from './errors.js';
import { asksForHelp, closest, columns, flag, formatOptions, option, parseOptions, wrap } from './options.js';

const table = {
  count: option({
    short: 'c',
    value: 'N',
    example: '3',
    parse: (text, name) => {
      if (!/^-?\d+$/.test(text)) throw new UsageError(`${name} '${text}' is not a number`);
      return Number(text);
    },
    default: 1,
    help: 'how many',
  }),
  label: option<string | undefined>({
    value: 'TEXT',
    example: 'x',
    parse: (text) => text,
    default: undefined,
    defaultHelp: 'the file name',
    help: 'a label',
  }),
  verbose: flag({ short: 'v', help: 'say more' }),
  quiet: flag({ help: 'say less' }),
};
const operands = [{ name: 'FILE', example: 'tool FILE' }];

function errorOf(args: string[]): string {
  try {
    parseOptions(table, args, operands);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as UsageError).message;
  }
  throw new Error(`${JSON.stringify(args)} parsed`);
}

describe('parseOptions', () => {
  it('gives the defaults, then what the arguments set, long, short, inline and grouped', () => {
    expect(parseOptions(table, ['f'], operands)).toEqual({
      values: { count: 1, label: undefined, verbose: false, quiet: false },
      operands: ['f'],
    });
    expect(parseOptions(table, ['--count', '2', 'f', '--label=a b', '-v'], operands).values).toEqual({
      count: 2,
      label: 'a b',
      verbose: true,
      quiet: false,
    });
    expect(parseOptions(table, ['-c5', 'f'], operands).values.count).toBe(5);
    expect(parseOptions(table, ['-vc', '7', 'f'], operands).values).toMatchObject({
      count: 7,
      verbose: true,
    });
    // The last one counts, as with parseArgs.
    expect(parseOptions(table, ['f', '-c', '1', '-c', '9'], operands).values.count).toBe(9);
  });

  it('takes a negative number as a value (for its own error), and anything after --', () => {
    expect(parseOptions(table, ['f', '--count', '-4'], operands).values.count).toBe(-4);
    expect(parseOptions(table, ['--', '--verbose'], operands)).toMatchObject({
      values: { verbose: false },
      operands: ['--verbose'],
    });
  });

  it.each([
    [['f', '--cuont', '2'], 'unknown option --cuont (did you mean --count?)'],
    [['f', '--frobnicate'], 'unknown option --frobnicate'],
    [['f', '-x'], 'unknown option -x'],
    // A long option is not accepted by its short letter; one dash starts a group of short ones.
    [['f', '--c', '2'], 'unknown option --c'],
    [['f', '-verbose'], 'unknown option -e'],
    [['f', '--count'], '--count needs a value (N)'],
    [['f', '-c'], '-c needs a value (N)'],
    [['f', '--count', '--verbose'], '--count needs a value (N) before --verbose'],
    [['f', '--count', 'many'], "--count 'many' is not a number"],
    [['f', '--verbose=yes'], "--verbose takes no value, got 'yes'"],
    [[], 'no FILE given'],
    [[''], 'no FILE given'],
    [['f', 'g'], "unexpected argument 'g'"],
  ])('%j: %s', (args, message) => {
    expect(errorOf(args)).toBe(message);
  });

  it('says how to give a missing value', () => {
    const error = (() => {
      try {
        parseOptions(table, ['f', '--label', '-x'], operands);
      } catch (caught) {
        return caught as UsageError;
      }
    })();
    expect(error?.fix).toBe("e.g. --label x, or --label=VALUE for a value starting with '-'");
    expect(parseOptions(table, ['f', '--label=-x'], operands).values.label).toBe('-x');
  });
});

describe('asksForHelp', () => {
  it('finds -h or --help anywhere before --', () => {
    expect(asksForHelp(['a', '--bogus', '-h'])).toBe(true);
    expect(asksForHelp(['--help'])).toBe(true);
    expect(asksForHelp(['--', '--help'])).toBe(false);
    expect(asksForHelp(['--helpful'])).toBe(false);
  });
});

describe('help text', () => {
  it('puts each option, its value and default beside its help', () => {
    expect(formatOptions(table)).toEqual([
      '  -c, --count N           how many (default: 1)',
      '      --label TEXT        a label (default: the file name)',
      '  -v, --verbose           say more',
      '      --quiet             say less',
    ]);
  });

  it('wraps at 80 columns and moves the help under a long label', () => {
    const text = Array.from({ length: 30 }, (_, i) => `word${i}`).join(' ');
    const lines = columns('  --a-very-long-option VALUE', text);
    expect(lines[0]).toBe('  --a-very-long-option VALUE');
    for (const line of lines.slice(1)) {
      expect(line.startsWith(' '.repeat(26))).toBe(true);
      expect(line.length).toBeLessThanOrEqual(80);
    }
    expect(lines.slice(1).join(' ').split(/\s+/).filter(Boolean).join(' ')).toBe(text);
    expect(wrap('aaa bbb ccc', 7)).toEqual(['aaa bbb', 'ccc']);
    expect(wrap('a-word-longer-than-the-width x', 5)).toEqual(['a-word-longer-than-the-width', 'x']);
  });
});

describe('closest', () => {
  it('suggests a candidate within two edits, the nearest', () => {
    expect(closest('sise', ['size', 'name'])).toBe('size');
    expect(closest('readonly', ['read-only', 'raw'])).toBe('read-only');
    expect(closest('nmae', ['name', 'size'])).toBe('name');
    expect(closest('timeout', ['command-timeout', 'io'])).toBeUndefined();
    expect(closest('serv', ['serve', 'stop'])).toBe('serve');
  });
});
