import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { modePageCodes } from './mode/pages.js';
import { defaultOpcodeTable } from './opcodes/index.js';
import { ascText } from './sense/asc-text.js';
import { SenseReasons, SenseKey } from './sense/reasons.js';
import { supportedVpdPages } from './spc/inquiry.js';
import { supportedLogPages } from './spc/log.js';

/**
 * docs/scsi.md lists every command, VPD page, mode page, log page and sense reason; the
 * generated sections must match the code. Regenerate with
 * `UPDATE_DOCS=1 npx vitest run --project unit packages/scsi/src/docs.test.ts`.
 */
const docPath = fileURLToPath(new URL('../../../docs/scsi.md', import.meta.url));
const hex = (n: number, width = 2) => `${n.toString(16).toUpperCase().padStart(width, '0')}h`;
const keyName = (key: number) =>
  Object.entries(SenseKey)
    .find(([, v]) => v === key)?.[0]
    .replaceAll('_', ' ') ?? '?';

function generated(): Record<string, string> {
  const commands = defaultOpcodeTable()
    .entries()
    .map((e) => {
      const flags = [
        e.writes ? 'writes' : '',
        e.reportsNoUnitAttention ? 'runs with UA pending' : '',
        e.allowedDuringFormat ? 'allowed during FORMAT' : '',
        e.allowedDuringSanitize === true ? 'allowed during SANITIZE' : '',
        typeof e.allowedDuringSanitize === 'function' ? 'allowed during SANITIZE for some pages' : '',
        e.supported ? 'offered per unit' : '',
        e.usageFor ? 'bits per unit' : '',
      ]
        .filter(Boolean)
        .join(', ');
      const sa = e.serviceAction === undefined ? '' : hex(e.serviceAction, e.opcode === 0x7f ? 4 : 2);
      return `| ${hex(e.opcode)} | ${sa} | ${e.name} | ${e.cdbLength} | ${e.direction} | ${flags} |`;
    });
  const vpd = supportedVpdPages().map((code) => `- ${hex(code)}`);
  const modes = modePageCodes.map((code) => `- ${hex(code)}`);
  const logs = supportedLogPages().map((p) => `- ${hex(p.code)}/${hex(p.subpage)} ${p.name}`);
  const reasons = Object.entries(SenseReasons).map(
    ([name, r]) =>
      `| ${name} | ${hex(r.key, 1)} ${keyName(r.key)} | ${hex(r.asc)} ${hex(r.ascq)} | ${ascText(r.asc, r.ascq)} |`,
  );
  return {
    commands: [
      '| Opcode | Service action | Command | CDB bytes | Data | Notes |',
      '|---|---|---|---|---|---|',
      ...commands,
    ].join('\n'),
    vpd: vpd.join('\n'),
    modes: modes.join('\n'),
    logs: logs.join('\n'),
    sense: ['| Reason | Sense key | ASC ASCQ | Text |', '|---|---|---|---|', ...reasons].join('\n'),
  };
}

function render(doc: string, sections: Record<string, string>): string {
  let out = doc;
  for (const [name, body] of Object.entries(sections)) {
    const pattern = new RegExp(`(<!-- ${name}:start -->\\n)[\\s\\S]*?(<!-- ${name}:end -->)`);
    if (!pattern.test(out)) throw new Error(`docs/scsi.md has no ${name} markers`);
    out = out.replace(pattern, `$1${body}\n$2`);
  }
  return out;
}

describe('docs/scsi.md', () => {
  it('lists exactly the commands, VPD pages, mode pages, log pages and sense reasons the code implements', () => {
    const doc = readFileSync(docPath, 'utf8');
    const expected = render(doc, generated());
    if (process.env.UPDATE_DOCS === '1' && expected !== doc) writeFileSync(docPath, expected);
    else expect(doc).toBe(expected);
  });
});
