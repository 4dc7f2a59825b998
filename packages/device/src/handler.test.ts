import { describe, expect, it, vi } from 'vitest';
import {
  collectMetrics,
  composeHandler,
  type DeviceCommand,
  type DeviceLogger,
  type Handler,
  injectFaults,
  logCommands,
  type HandlerMiddleware,
} from './handler.js';
import { MetricsCollector } from './metrics.js';

const command = (overrides: Partial<DeviceCommand> = {}): DeviceCommand => ({
  id: 1,
  cdb: Uint8Array.of(0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0),
  opcode: 0x28,
  dataOut: new Uint8Array(0),
  dataInLength: 512,
  signal: new AbortController().signal,
  nexus: 'test',
  device: 'vol0',
  receivedAt: performance.now(),
  ...overrides,
  dataOutLength: overrides.dataOutLength ?? overrides.dataOut?.length ?? 0,
});

const good: Handler = (cmd) => ({ status: 0, dataIn: new Uint8Array(cmd.dataInLength).fill(7) });

describe('composeHandler', () => {
  it('runs middleware outermost first and lets results flow back', async () => {
    const order: string[] = [];
    const layer =
      (name: string): HandlerMiddleware =>
      async (cmd, next) => {
        order.push(`${name} in`);
        const result = await next(cmd);
        order.push(`${name} out`);
        return result;
      };
    const handler = composeHandler([layer('a'), layer('b')], (cmd) => {
      order.push('handler');
      return good(cmd);
    });
    const result = await handler(command());
    expect(result.status).toBe(0);
    expect(order).toEqual(['a in', 'b in', 'handler', 'b out', 'a out']);
  });

  it('lets a middleware answer without calling next, or replace the command', async () => {
    const inner = vi.fn(good);
    const shortCircuit = composeHandler([() => ({ status: 0x08 })], inner);
    expect((await shortCircuit(command())).status).toBe(0x08);
    expect(inner).not.toHaveBeenCalled();

    const rewrite = composeHandler([(cmd, next) => next({ ...cmd, dataInLength: 4 })], inner);
    expect((await rewrite(command())).dataIn).toHaveLength(4);
  });

  it('turns a synchronous throw of an inner handler into a rejection middleware can catch', async () => {
    const handler = composeHandler(
      [
        async (cmd, next) => {
          try {
            return await next(cmd);
          } catch {
            return { status: 0x02 };
          }
        },
      ],
      () => {
        throw new Error('boom');
      },
    );
    expect((await handler(command())).status).toBe(0x02);
  });

  it('rejects non-functions', () => {
    expect(() => composeHandler([], undefined as unknown as Handler)).toThrow(TypeError);
    expect(() => composeHandler([42 as unknown as HandlerMiddleware], good)).toThrow(/middleware\[0\]/);
  });
});

describe('logCommands', () => {
  const logger = () => {
    const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string | undefined }> = [];
    const at =
      (level: string) =>
      (obj: object, msg?: string): void => {
        lines.push({ level, obj: obj as Record<string, unknown>, msg });
      };
    const log: DeviceLogger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
    return { log, lines };
  };

  it('logs GOOD commands at the chosen level with the CDB in hex', async () => {
    const { log, lines } = logger();
    await composeHandler([logCommands(log, { level: 'info' })], good)(command());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'info',
      obj: { cdb: '28000000000800000100', status: 0, dataIn: 512 },
    });
  });

  it('logs failures at warn with the sense', async () => {
    const { log, lines } = logger();
    const failing: Handler = () => ({ status: 2, sense: Uint8Array.of(0x70, 0, 5) });
    await composeHandler([logCommands(log)], failing)(command());
    expect(lines[0]).toMatchObject({ level: 'warn', obj: { status: 2, sense: '700005' } });
  });
});

describe('injectFaults', () => {
  it('fails matched commands at the given rate with the given answer', async () => {
    let n = 0;
    const random = () => (n++ % 2 === 0 ? 0.1 : 0.9); // fail every other one
    const handler = composeHandler(
      [
        injectFaults({
          failureRate: 0.5,
          random,
          failWith: { status: 0x28 },
          match: (c) => c.opcode === 0x28,
        }),
      ],
      good,
    );
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await handler(command())).status);
    expect(statuses).toEqual([0x28, 0, 0x28, 0]);
    // unmatched commands pass through untouched
    expect((await handler(command({ opcode: 0x12 }))).status).toBe(0);
  });

  it('answers BUSY by default and computes the answer per command when given a function', async () => {
    const always = () => 0;
    expect(
      (await composeHandler([injectFaults({ failureRate: 1, random: always })], good)(command())).status,
    ).toBe(0x08);
    const perCommand = injectFaults({ failureRate: 1, random: always, failWith: (c) => ({ status: c.id }) });
    expect((await composeHandler([perCommand], good)(command({ id: 0x18 }))).status).toBe(0x18);
  });

  it('delays commands, and ends the delay with TASK ABORTED when the command is aborted', async () => {
    vi.useFakeTimers();
    try {
      const handler = composeHandler([injectFaults({ delayMs: 100 })], good);
      let settled = false;
      const pending = Promise.resolve(handler(command())).then((r) => {
        settled = true;
        return r;
      });
      await vi.advanceTimersByTimeAsync(99);
      expect(settled).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      expect((await pending).status).toBe(0);

      const abort = new AbortController();
      const aborted = handler(command({ signal: abort.signal }));
      await vi.advanceTimersByTimeAsync(10);
      abort.abort();
      expect((await aborted).status).toBe(0x40);
    } finally {
      vi.useRealTimers();
    }
  });

  it('rejects a rate outside 0..1', () => {
    expect(() => injectFaults({ failureRate: 2 })).toThrow(RangeError);
  });
});

describe('collectMetrics', () => {
  it('records what passes through', async () => {
    const metrics = new MetricsCollector();
    const handler = composeHandler([collectMetrics(metrics)], good);
    await handler(command());
    await handler(command({ opcode: 0x2a, dataOut: new Uint8Array(1024), dataInLength: 0 }));
    expect(metrics.snapshot()).toMatchObject({
      commands: 2,
      reads: 1,
      writes: 1,
      bytesRead: 512,
      bytesWritten: 1024,
    });
  });

  it('counts a throwing handler as an error', async () => {
    const metrics = new MetricsCollector();
    const handler = composeHandler([collectMetrics(metrics)], () => {
      throw new Error('x');
    });
    await expect(handler(command())).rejects.toThrow('x');
    expect(metrics.snapshot()).toMatchObject({ commands: 1, errors: 1, inFlight: 0 });
  });
});
