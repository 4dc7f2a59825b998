import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { commandNames, usage } from './args.js';
import { main } from './main.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The README's `$ tcmufile ... --help` blocks: the command line and what follows it. */
function helpBlocks(): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const match of readme.matchAll(/```console\n\$ (tcmufile (?:\w+ )?--help)\n([\s\S]*?)\n```/g)) {
    blocks.set(match[1]!, match[2]!);
  }
  return blocks;
}

describe('README', () => {
  it('shows the help of tcmufile and of each command exactly as they print it, and no other', () => {
    const expected = new Map<string, string>([
      ['tcmufile --help', usage.main],
      ...commandNames.map((name): [string, string] => [`tcmufile ${name} --help`, usage[name]]),
    ]);
    // On a mismatch, paste the output of the command shown into the README.
    expect(Object.fromEntries(helpBlocks())).toEqual(Object.fromEntries(expected));
  });

  it('shows the one-line usage error as main prints it', async () => {
    const [, argv = '', line = ''] =
      /```console\n\$ tcmufile (serve [^\n]*)\n([^\n]*)\n```/.exec(readme) ?? [];
    expect(argv).not.toBe('');
    const err: string[] = [];
    const io = { writeOut: () => {}, writeErr: (text: string) => void err.push(text), stderrIsTty: false };
    expect(await main(argv.split(' '), io)).toBe(64);
    expect(err).toEqual([`${line}\n`]);
  });
});
