import { describe, expect, it, vi } from 'vitest';
import { type Closable, handleSignals } from './signals.js';

// SIGUSR2 stands in for SIGINT/SIGTERM: the test runner does not listen to it.
const SIGNAL = 'SIGUSR2' as const;

const closable = (behaviour: 'ok' | 'fail' | 'slow' = 'ok') => {
  const device = {
    closed: 0,
    options: undefined as unknown,
    release: () => {},
    close(options?: { drainTimeoutMs?: number }): Promise<void> {
      device.closed++;
      device.options = options;
      if (behaviour === 'fail') return Promise.reject(new Error('teardown failed'));
      if (behaviour === 'slow') {
        return new Promise((resolve) => {
          device.release = resolve;
        });
      }
      return Promise.resolve();
    },
  };
  return device;
};

describe('handleSignals', () => {
  it('closes every device then exits 0', async () => {
    const exit = vi.fn();
    const onSignal = vi.fn();
    const a = closable();
    const b = closable();
    const stop = handleSignals([a, b], { signals: [SIGNAL], exit, onSignal, drainTimeoutMs: 123 });
    try {
      process.emit(SIGNAL, SIGNAL);
      await vi.waitFor(() => expect(exit).toHaveBeenCalledWith(0));
      expect(onSignal).toHaveBeenCalledWith(SIGNAL);
      expect([a.closed, b.closed]).toEqual([1, 1]);
      expect(a.options).toEqual({ drainTimeoutMs: 123 });
    } finally {
      stop();
    }
  });

  it('exits 1 when a close fails, after trying all', async () => {
    const exit = vi.fn();
    const ok = closable();
    const stop = handleSignals([closable('fail'), ok], { signals: [SIGNAL], exit });
    try {
      process.emit(SIGNAL, SIGNAL);
      await vi.waitFor(() => expect(exit).toHaveBeenCalledWith(1));
      expect(ok.closed).toBe(1);
    } finally {
      stop();
    }
  });

  it('reads the list when the signal arrives and exits at once on a second signal', async () => {
    const exit = vi.fn();
    const devices: Closable[] = [];
    const stop = handleSignals(devices, { signals: [SIGNAL], exit });
    const slow = closable('slow');
    devices.push(slow);
    try {
      process.emit(SIGNAL, SIGNAL);
      expect(slow.closed).toBe(1);
      process.emit(SIGNAL, SIGNAL);
      expect(exit).toHaveBeenCalledWith(1);
      slow.release();
      await vi.waitFor(() => expect(exit).toHaveBeenCalledTimes(2));
    } finally {
      stop();
    }
  });

  it('removes its listeners when stopped', () => {
    const before = process.listenerCount(SIGNAL);
    const stop = handleSignals([], { signals: [SIGNAL], exit: () => {} });
    expect(process.listenerCount(SIGNAL)).toBe(before + 1);
    stop();
    expect(process.listenerCount(SIGNAL)).toBe(before);
  });
});
