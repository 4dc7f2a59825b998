import type { DeviceLogger } from './handler.js';
import { silentLogger } from './handler.js';

/** Anything close()-able: a Device or a Target. */
export interface Closable {
  close(options?: { drainTimeoutMs?: number }): Promise<void>;
}

export interface HandleSignalsOptions {
  /** Signals to handle (default SIGINT and SIGTERM). */
  readonly signals?: readonly NodeJS.Signals[];
  /** Called first with the signal (e.g. to print "stopping…"). */
  readonly onSignal?: (signal: NodeJS.Signals) => void;
  /** Passed to every close() (default: the device default, 5000 ms). */
  readonly drainTimeoutMs?: number;
  readonly logger?: DeviceLogger;
  /**
   * Called after everything closed: 0 when all closed cleanly, 1 otherwise.
   * Default process.exit. A second signal while closing exits at once with 1.
   */
  readonly exit?: (code: number) => void;
}

/**
 * On SIGINT/SIGTERM, close every device (in parallel), then exit 0 (1 if a
 * close failed). `devices` is read when the signal arrives, so a caller may
 * keep adding to the array. Returns a function that removes the handlers.
 */
export function handleSignals(devices: readonly Closable[], options: HandleSignalsOptions = {}): () => void {
  const signals = options.signals ?? (['SIGINT', 'SIGTERM'] as const);
  const logger = options.logger ?? silentLogger;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let closing = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) {
      logger.warn({ signal }, 'second signal while closing: exiting now');
      exit(1);
      return;
    }
    closing = true;
    try {
      options.onSignal?.(signal);
    } catch (error) {
      logger.error({ err: error }, 'onSignal callback failed');
    }
    logger.info({ signal, devices: devices.length }, 'signal received: closing devices');
    const closeOptions =
      options.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: options.drainTimeoutMs };
    void Promise.allSettled(devices.map((device) => device.close(closeOptions))).then((results) => {
      let failed = 0;
      for (const result of results) {
        if (result.status === 'rejected') {
          failed++;
          logger.error({ err: result.reason }, 'close failed');
        }
      }
      exit(failed === 0 ? 0 : 1);
    });
  };
  for (const signal of signals) process.on(signal, onSignal);
  return () => {
    for (const signal of signals) process.off(signal, onSignal);
  };
}
