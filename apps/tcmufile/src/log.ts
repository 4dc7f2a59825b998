import { destination, pino } from 'pino';

/** One level of a Logger: pino's (fields, message?) or (message) forms. */
export type LogMethod = {
  (fields: object, message?: string): void;
  (message: string): void;
};

/** The pino subset the CLI and @tcmu/device use. */
export interface Logger {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Structured JSON lines (pino) on stderr, for services, pipes and log collectors. */
export function createJsonLogger(level: LogLevel = 'info'): Logger {
  return pino({ name: 'tcmufile', level, base: { pid: process.pid } }, destination({ fd: 2, sync: true }));
}

const levelRank: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 };

/**
 * One plain line per record, for a person at a terminal. Each line first clears the live status
 * line (CR, erase line) so the two never mix; the status line is redrawn on its next tick.
 */
export function createHumanLogger(write: (text: string) => void, level: LogLevel = 'info'): Logger {
  const method =
    (recordLevel: LogLevel): LogMethod =>
    (fieldsOrMessage: object | string, message?: string) => {
      if (levelRank[recordLevel] < levelRank[level]) return;
      write(`\r\x1b[K${formatHumanRecord(recordLevel, fieldsOrMessage, message)}\n`);
    };
  return { debug: method('debug'), info: method('info'), warn: method('warn'), error: method('error') };
}

export function formatHumanRecord(
  level: LogLevel,
  fieldsOrMessage: object | string,
  message?: string,
): string {
  const text =
    typeof fieldsOrMessage === 'string'
      ? fieldsOrMessage
      : (message ?? (errorMessageOf(fieldsOrMessage) || JSON.stringify(fieldsOrMessage)));
  const prefix = level === 'info' ? '' : level === 'debug' ? 'debug: ' : `${level}: `;
  return `tcmufile: ${prefix}${text}`;
}

function errorMessageOf(fields: object): string {
  const err = (fields as { err?: unknown }).err;
  return err instanceof Error ? err.message : '';
}
