import { describe, expect, it } from 'vitest';
import { createHumanLogger, formatHumanRecord } from './log.js';

describe('human logger', () => {
  it('clears the live line before each record and honours the level', () => {
    const out: string[] = [];
    const logger = createHumanLogger((text) => out.push(text), 'info');
    logger.debug('hidden');
    logger.info('serving');
    logger.warn({ image: 'x' }, 'partial');
    logger.error({ err: new Error('boom') });
    expect(out).toEqual([
      '\r\x1b[Ktcmufile: serving\n',
      '\r\x1b[Ktcmufile: warn: partial\n',
      '\r\x1b[Ktcmufile: error: boom\n',
    ]);
  });
  it('falls back to the fields as JSON when there is no message', () => {
    expect(formatHumanRecord('info', { a: 1 })).toBe('tcmufile: {"a":1}');
  });
});
