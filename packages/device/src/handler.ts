import type { MetricsCollector } from './metrics.js';

/**
 * The handler API, in the manner of net/http: a Handler answers one SCSI
 * command; Middleware wraps a handler (`(cmd, next) => result`) to log,
 * measure, delay or fail commands, or to answer some itself.
 */

/** What a handler answers: the SAM status, sense on CHECK CONDITION, the Data-In bytes. */
export interface HandlerResult {
  /** SAM status byte (0x00 GOOD, 0x02 CHECK CONDITION, 0x08 BUSY, 0x40 TASK ABORTED...). */
  readonly status: number;
  /** Sense data (at most 96 bytes reach the initiator) when status is CHECK CONDITION. */
  readonly sense?: Uint8Array;
  /**
   * Data-In bytes for the initiator. Longer than the command's dataInLength
   * is cut to it; shorter sets the residual (the kernel reports underflow).
   */
  readonly dataIn?: Uint8Array;
}

/**
 * One SCSI command as a handler sees it: the ring's command object itself
 * (@tcmu/ring RingCommand), which @tcmu/scsi also takes as the request.
 */
export interface DeviceCommand {
  /** The ring's command id (unique among commands in flight). */
  readonly id: number;
  /**
   * The CDB. Valid until the command completes (the ring reuses its memory
   * for the next command with this id): copy what you keep longer.
   */
  readonly cdb: Uint8Array;
  /** cdb[0]. */
  readonly opcode: number;
  /**
   * The ring's main buffer as Data-Out (WRITE data, parameter lists): a
   * zero-copy view of the data area (a gathered copy when it is in several
   * iovecs), valid only until the command completes. For a command that reads
   * it is the Data-In buffer, with stale bytes: look at the opcode.
   */
  readonly dataOut: Uint8Array;
  /** Size of the main buffer (what `dataOut` would hold), without touching it. */
  readonly dataOutLength: number;
  /** The Data-Out iovecs as views, when there are several (else undefined: dataOut is a view). */
  readonly dataOutSegments?: readonly Uint8Array[] | undefined;
  /** Bytes of Data-In the initiator expects (the main buffer's size, or the BIDI buffer's). */
  readonly dataInLength: number;
  /** The Data-In memory, to fill in place (one view, or the views of several iovecs). */
  readonly dataInBuffer?: Uint8Array | readonly Uint8Array[];
  /** Aborted when the kernel aborts the command (TMR) or close() gives up waiting for it. */
  readonly signal: AbortSignal;
  /**
   * Whether the command was aborted, without building `signal` (which costs an
   * AbortController); the device's own commands offer it.
   */
  readonly aborted?: boolean;
  /** I_T nexus id the emulation keys unit attentions on. */
  readonly nexus: string;
  /** The device's name. */
  readonly device: string;
  /** performance.now() of the batch the command arrived in. */
  readonly receivedAt: number;
}

export type Handler = (cmd: DeviceCommand) => HandlerResult | Promise<HandlerResult>;

/** Wraps `next`; may change the command passed on, the result, or answer without calling `next`. */
export type HandlerMiddleware = (
  cmd: DeviceCommand,
  next: (cmd: DeviceCommand) => Promise<HandlerResult>,
) => HandlerResult | Promise<HandlerResult>;

/** Calls a handler, turning a synchronous throw into a rejection. */
const invoke = (handler: Handler, cmd: DeviceCommand): Promise<HandlerResult> => {
  try {
    return Promise.resolve(handler(cmd));
  } catch (error) {
    return Promise.reject(error);
  }
};

/**
 * Builds one handler from middleware and a final handler; the first
 * middleware is the outermost (it sees the command first and the result last).
 */
export function composeHandler(middleware: readonly HandlerMiddleware[], handler: Handler): Handler {
  if (typeof handler !== 'function') throw new TypeError('handler must be a function');
  let next: Handler = handler;
  for (let i = middleware.length - 1; i >= 0; i--) {
    const layer = middleware[i];
    if (typeof layer !== 'function') throw new TypeError(`middleware[${i}] must be a function`);
    const inner = next;
    const callInner = (cmd: DeviceCommand) => invoke(inner, cmd);
    next = (cmd) => layer(cmd, callInner);
  }
  return next;
}

/**
 * Data-Out bytes of a finished command: the emulation's result says its
 * direction; without one (a custom handler's), the main buffer counts.
 */
export const dataOutBytes = (cmd: DeviceCommand, result: HandlerResult): number => {
  const direction = (result as { direction?: string }).direction;
  return direction === undefined || direction === 'out' || direction === 'bidi' ? cmd.dataOutLength : 0;
};

/** Data-In bytes a result produced: its `dataIn`, or what the emulation wrote in place (dataInLength - residual). */
export const dataInBytes = (cmd: DeviceCommand, result: HandlerResult): number => {
  if (result.dataIn !== undefined) return Math.min(result.dataIn.length, cmd.dataInLength);
  const { direction, residual } = result as { direction?: string; residual?: number };
  return (direction === 'in' || direction === 'bidi') && residual !== undefined
    ? cmd.dataInLength - residual
    : 0;
};

/** Injectable logger: a pino-compatible subset. */
export interface DeviceLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const nothing = (): void => {};
/** Discards everything (the default logger). */
export const silentLogger: DeviceLogger = { debug: nothing, info: nothing, warn: nothing, error: nothing };

const hex = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

export interface LogCommandsOptions {
  /** Level for commands that complete GOOD (default 'debug'); failures log at 'warn'. */
  readonly level?: 'debug' | 'info';
}

/** Middleware: one log line per command (CDB, status, sense, latency). */
export function logCommands(logger: DeviceLogger, options: LogCommandsOptions = {}): HandlerMiddleware {
  const level = options.level ?? 'debug';
  return async (cmd, next) => {
    const result = await next(cmd);
    const entry = {
      device: cmd.device,
      id: cmd.id,
      cdb: hex(cmd.cdb),
      status: result.status,
      dataIn: dataInBytes(cmd, result),
      dataOut: dataOutBytes(cmd, result),
      latencyMs: performance.now() - cmd.receivedAt,
      ...(result.sense && result.sense.length > 0 ? { sense: hex(result.sense) } : {}),
    };
    if (result.status === 0) logger[level](entry, 'scsi command');
    else logger.warn(entry, 'scsi command failed');
    return result;
  };
}

export interface InjectFaultsOptions {
  /** Which commands to affect (default: all). */
  readonly match?: (cmd: DeviceCommand) => boolean;
  /** Added latency in ms before the command runs (a number or per command). */
  readonly delayMs?: number | ((cmd: DeviceCommand) => number);
  /** Fraction (0..1) of matched commands answered with `failWith` instead of running. */
  readonly failureRate?: number;
  /** The answer of failed commands (default: BUSY, which initiators retry). */
  readonly failWith?: HandlerResult | ((cmd: DeviceCommand) => HandlerResult);
  /** Random source in [0, 1) (default Math.random); inject for reproducible runs. */
  readonly random?: () => number;
}

const STATUS_CHECK_CONDITION = 0x02;
const STATUS_BUSY = 0x08;
const STATUS_TASK_ABORTED = 0x40;

const sleep = (ms: number, signal: AbortSignal): Promise<boolean> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Middleware: delays and/or fails chosen commands, for testing how
 * filesystems, databases and initiators cope. (Media errors at chosen LBAs
 * are better injected under the emulation: FaultInjectionBackend.)
 */
export function injectFaults(options: InjectFaultsOptions): HandlerMiddleware {
  const rate = options.failureRate ?? 0;
  if (!(rate >= 0 && rate <= 1)) throw new RangeError('failureRate must be within 0..1');
  const random = options.random ?? Math.random;
  const match = options.match ?? (() => true);
  return async (cmd, next) => {
    if (!match(cmd)) return next(cmd);
    const delay = typeof options.delayMs === 'function' ? options.delayMs(cmd) : (options.delayMs ?? 0);
    if (delay > 0 && !(await sleep(delay, cmd.signal))) return { status: STATUS_TASK_ABORTED };
    if (rate > 0 && random() < rate) {
      const failWith = options.failWith ?? { status: STATUS_BUSY };
      return typeof failWith === 'function' ? failWith(cmd) : failWith;
    }
    return next(cmd);
  };
}

/**
 * Middleware: records every command passing through into `collector`
 * (counters, rates, latency histogram), e.g. to measure one layer of a chain
 * or a subset of commands; the device itself always keeps its own metrics.
 */
export function collectMetrics(collector: MetricsCollector): HandlerMiddleware {
  return async (cmd, next) => {
    collector.started();
    const startedAt = performance.now();
    // A throw reaches the initiator as CHECK CONDITION (HARDWARE ERROR).
    let result: HandlerResult = { status: STATUS_CHECK_CONDITION };
    try {
      result = await next(cmd);
      return result;
    } finally {
      collector.finished({
        opcode: cmd.opcode,
        ...(cmd.opcode === 0x7f && cmd.cdb.length >= 10
          ? { serviceAction: (cmd.cdb[8]! << 8) | cmd.cdb[9]! }
          : {}),
        status: result.status,
        dataInBytes: dataInBytes(cmd, result),
        dataOutBytes: dataOutBytes(cmd, result),
        latencyMs: performance.now() - startedAt,
      });
    }
  };
}
