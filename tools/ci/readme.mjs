// Reads README.md's code blocks so CI runs exactly what the README says.
//
//   node tools/ci/readme.mjs commands "Set up"   the commands of the first ```sh block under the
//                                                heading that starts with "Set up", one a line
//   node tools/ci/readme.mjs code "Use the SCSI"  the first code block under that heading, as is
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const readmePath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md');

/**
 * The first fenced block (of one of `language`, when given) under the `## heading…` section.
 * @param {string} heading
 * @param {{ language?: string[], text?: string }} [options]
 * @returns {string}
 */
export function codeBlock(heading, { language, text = readFileSync(readmePath, 'utf8') } = {}) {
  const lines = text.split('\n');
  const start = lines.findIndex(
    (line) => /^#{1,6} /.test(line) && line.replace(/^#+ /, '').startsWith(heading),
  );
  if (start < 0) throw new Error(`README.md has no section "${heading}"`);
  for (let i = start + 1; i < lines.length && !/^#{1,2} /.test(lines[i]); i++) {
    const fence = /^```(\w*)\s*$/.exec(lines[i]);
    if (!fence || (language && !language.includes(fence[1]))) continue;
    const end = lines.findIndex((line, j) => j > i && /^```\s*$/.test(line));
    if (end < 0) break;
    return lines.slice(i + 1, end).join('\n');
  }
  throw new Error(`README.md section "${heading}" has no ${language?.join('/') ?? ''} code block`);
}

/**
 * The shell commands of a section's sh block, comments and blank lines dropped.
 * @param {string} heading
 * @param {{ text?: string }} [options]
 * @returns {string[]}
 */
export function commands(heading, options = {}) {
  return codeBlock(heading, { ...options, language: ['sh', 'bash', 'shell'] })
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [what, heading] = process.argv.slice(2);
  if (what === 'commands' && heading) console.log(commands(heading).join('\n'));
  else if (what === 'code' && heading) console.log(codeBlock(heading));
  else {
    console.error('usage: node tools/ci/readme.mjs commands|code "<heading>"');
    process.exit(2);
  }
}
