import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseCommandLine, type ServeCommand } from './args.js';
import {
  ControlError,
  controlNames,
  controlSocketPath,
  requestControl,
  startControlServer,
} from './control.js';
import { resizeServe, statusOfServes } from './control-commands.js';
import { ExitCode } from './errors.js';
import type { Logger } from './log.js';
import { type ServeDependencies, type ServedDevice, serve } from './serve.js';
import { writePidFile } from './pid-file.js';
import { runShell } from './run.js';
import type { StatusReport } from './status.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcmufile-control-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const handlers = {
  status: () => ({ hello: 'world' }),
  resize: async (size: number, force: boolean) => ({ size, force }),
};

describe('control socket', () => {
  it('answers newline-delimited JSON on a 0600 socket named after the volume, and removes it on close', async () => {
    const server = await startControlServer(controlSocketPath(dir, 'vol0'), handlers);
    expect(server.path).toBe(join(dir, 'vol0.sock'));
    expect((await stat(server.path)).mode & 0o777).toBe(0o600);
    expect(await controlNames(dir)).toEqual(['vol0']);
    expect(await requestControl(dir, 'vol0', { op: 'status' })).toEqual({ hello: 'world' });
    expect(await requestControl(dir, 'vol0', { op: 'resize', size: 4096, force: true })).toEqual({
      size: 4096,
      force: true,
    });
    await server.close();
    expect(await controlNames(dir)).toEqual([]);
  });

  it("passes a handler's failure on with its fix and exit code", async () => {
    const server = await startControlServer(controlSocketPath(dir, 'vol0'), {
      ...handlers,
      resize: async () => {
        throw new ControlError('no room', ExitCode.badImage, { fix: 'free some' });
      },
    });
    try {
      const error = await requestControl(dir, 'vol0', { op: 'resize', size: 512, force: false }).catch(
        (e) => e,
      );
      expect(error).toBeInstanceOf(ControlError);
      expect(error).toMatchObject({ message: 'no room', fix: 'free some', exitCode: ExitCode.badImage });
    } finally {
      await server.close();
    }
  });

  it('says no serve runs when nothing answers (69), and replaces a stale socket file', async () => {
    const error = await requestControl(dir, 'gone', { op: 'status' }).catch((e: unknown) => e);
    expect(error).toMatchObject({
      exitCode: ExitCode.unavailable,
      message: expect.stringContaining('no serve of gone is running'),
    });
    await writeFile(join(dir, 'stale.sock'), '');
    const server = await startControlServer(controlSocketPath(dir, 'stale'), handlers);
    expect(await requestControl(dir, 'stale', { op: 'status' })).toEqual({ hello: 'world' });
    // A second serve of the same name is refused while the first answers.
    await expect(startControlServer(controlSocketPath(dir, 'stale'), handlers)).rejects.toMatchObject({
      exitCode: ExitCode.inUse,
    });
    await server.close();
  });
});

describe('status and resize commands', () => {
  it('parse NAME as optional for status and NAME SIZE for resize', () => {
    expect(parseCommandLine(['status'])).toMatchObject({ kind: 'status', name: undefined, json: false });
    expect(parseCommandLine(['status', 'vol0', '--json', '--control-dir', dir])).toEqual({
      kind: 'status',
      name: 'vol0',
      json: true,
      controlDir: dir,
    });
    expect(parseCommandLine(['resize', 'vol0', '2G', '--force'])).toMatchObject({
      kind: 'resize',
      name: 'vol0',
      size: 2 * 2 ** 30,
      force: true,
    });
    expect(() => parseCommandLine(['resize', 'vol0'])).toThrow(/no SIZE given/);
  });
});

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A serve on fake dependencies, with its control socket in `dir`. */
function startServe(
  device: ServedDevice,
  extra: { run?: string; pidFile?: string; deps?: Partial<ServeDependencies> } = {},
) {
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  const command = {
    ...(parseCommandLine(['serve', '/tmp/disk.img', '--size', '1M', '--name', 'vol0']) as ServeCommand),
    controlDir: dir,
    metrics: { host: '127.0.0.1', port: 0 },
    run: extra.run,
    pidFile: extra.pidFile,
  };
  const metrics: unknown[] = [];
  let clock = 0;
  const deps: ServeDependencies = {
    checkEnvironment: async () => {},
    prepareImage: async (request) => ({
      path: request.path,
      size: request.size ?? 0,
      created: false,
      fileSize: request.size ?? 0,
    }),
    openDevice: async () => device,
    waitForStop: () => stopped,
    writeOut: () => {},
    writeStatus: undefined,
    logger: silent,
    statusIntervalMs: 10_000,
    now: () => {
      clock += 1500;
      return clock;
    },
    setInterval: () => ({}),
    clearInterval: () => {},
    startControl: (name, h) => startControlServer(controlSocketPath(dir, name), h),
    notifier: {
      send: async (assignments) => void metrics.push(assignments),
      startWatchdog: () => () => void metrics.push('watchdog off'),
    },
    startMetrics: async (address, served) => {
      metrics.push(`start ${address.host}:${address.port} ${served === device}`);
      return { url: 'http://127.0.0.1:1/metrics', close: async () => void metrics.push('close') };
    },
    ...extra.deps,
  };
  return { done: serve(command, deps), stop: (signal: string) => stop(signal), metrics };
}

describe('serve with a control socket', () => {
  it('reports status and resizes the device through tcmufile status / resize', async () => {
    const resized: Array<[number, boolean]> = [];
    const device: ServedDevice = {
      diskPath: '/dev/sdb',
      nodePath: '/dev/tcmufile/vol0',
      reattached: false,
      state: 'ready',
      stats: () => ({
        commands: 1200,
        bytesRead: 1 << 20,
        bytesWritten: 0,
        errors: 0,
        inFlight: 2,
        iops: 400,
        readBytesPerSec: 2e6,
        writeBytesPerSec: 0,
        latency: { p50Ms: 0.1, p90Ms: 0.2, p99Ms: 0.5, p999Ms: 1, maxMs: 3 },
      }),
      close: async () => {},
      detach: async () => ({ abandoned: 0 }),
      on: () => undefined,
      resize: async (blocks, force) => {
        if (blocks < 2048 && !force) throw Object.assign(new Error('shrink'), { reason: 'shrink' });
        if (blocks > 1 << 30) throw Object.assign(new Error('no resize()'), { reason: 'unsupported' });
        resized.push([blocks, force]);
      },
    };
    const serving = startServe(device);
    await vi.waitFor(async () => expect(await controlNames(dir)).toEqual(['vol0']));

    const out: string[] = [];
    expect(
      await statusOfServes(
        { kind: 'status', name: undefined, json: true, controlDir: dir },
        { writeOut: (t) => out.push(t) },
      ),
    ).toBe(0);
    const [report] = JSON.parse(out.join('')) as StatusReport[];
    expect(report).toMatchObject({
      name: 'vol0',
      state: 'ready',
      sizeBytes: 1 << 20,
      iops: 400,
      inFlight: 2,
    });
    expect(report!.uptimeS).toBeGreaterThan(0);
    expect(report!.latency).toMatchObject({ p99Ms: 0.5 });

    out.length = 0;
    await statusOfServes(
      { kind: 'status', name: 'vol0', json: false, controlDir: dir },
      { writeOut: (t) => out.push(t) },
    );
    expect(out.join('')).toMatch(
      /^vol0 {2}ready {2}up \d+s .*\n {2}1\.20k commands \| 400 IOPS .*\n {2}latency p50 0\.10 ms .* p99 0\.50 ms/,
    );

    out.length = 0;
    expect(
      await resizeServe(
        { kind: 'resize', name: 'vol0', size: 2 << 20, force: false, controlDir: dir },
        { writeOut: (t) => out.push(t) },
      ),
    ).toBe(0);
    expect(resized).toEqual([[4096, false]]);
    expect(out.join('')).toContain('vol0: 1 MiB -> 2 MiB; grow the filesystem');

    const shrink = await resizeServe(
      { kind: 'resize', name: 'vol0', size: 512 << 10, force: false, controlDir: dir },
      { writeOut: () => {} },
    ).catch((e) => e);
    expect(shrink).toMatchObject({ exitCode: ExitCode.badImage, fix: expect.stringContaining('--force') });
    const unaligned = await resizeServe(
      { kind: 'resize', name: 'vol0', size: 1000, force: true, controlDir: dir },
      { writeOut: () => {} },
    ).catch((e) => e);
    expect(unaligned).toMatchObject({ exitCode: ExitCode.usage });
    const readOnly = await resizeServe(
      { kind: 'resize', name: 'vol0', size: 2 ** 40, force: false, controlDir: dir },
      { writeOut: () => {} },
    ).catch((e: unknown) => e);
    expect(readOnly).toMatchObject({
      exitCode: ExitCode.badImage,
      fix: expect.stringContaining('--read-only'),
    });

    serving.stop('SIGTERM');
    expect(await serving.done).toBe(0);
    expect(await controlNames(dir)).toEqual([]);
    expect(serving.metrics).toEqual([
      'start 127.0.0.1:0 true',
      { READY: '1', STATUS: 'serving /tmp/disk.img as /dev/tcmufile/vol0 -> /dev/sdb' },
      'close',
      'watchdog off',
      { STOPPING: '1', STATUS: 'SIGTERM: stopping vol0' },
    ]);
  });

  it('closes the disk again when its control socket cannot start (another serve of NAME answers)', async () => {
    const other = await startControlServer(controlSocketPath(dir, 'vol0'), handlers);
    let closed = 0;
    const device: ServedDevice = {
      diskPath: '/dev/sdb',
      nodePath: undefined,
      reattached: false,
      stats: () => ({ commands: 0, bytesRead: 0, bytesWritten: 0, errors: 0, inFlight: 0 }),
      close: async () => void closed++,
      detach: async () => ({ abandoned: 0 }),
      on: () => undefined,
    };
    try {
      await expect(startServe(device).done).rejects.toMatchObject({ exitCode: ExitCode.inUse });
      expect(closed).toBe(1);
    } finally {
      await other.close();
    }
  });
});

describe('serve --run', () => {
  const served = (log: string[]): ServedDevice => ({
    diskPath: '/dev/sdb',
    nodePath: '/dev/tcmufile/vol0',
    reattached: false,
    stats: () => ({ commands: 0, bytesRead: 0, bytesWritten: 0, errors: 0, inFlight: 0 }),
    close: async () => void log.push('close'),
    detach: async () => ({ abandoned: 0 }),
    on: () => undefined,
  });

  it('runs CMD through /bin/sh with $DISK and $NODE once the disk is ready, then removes it and exits with its status', async () => {
    const log: string[] = [];
    const out = join(dir, 'env.txt');
    const serving = startServe(served(log), {
      run: `echo "$DISK $NODE" > ${out}; exit 7`,
      deps: { runCommand: runShell },
    });
    expect(await serving.done).toBe(7);
    expect(log).toEqual(['close']);
    expect(await readFile(out, 'utf8')).toBe('/dev/sdb /dev/tcmufile/vol0\n');
  });

  it('on a stop signal first stops CMD (SIGTERM: 143) and waits for it', async () => {
    const log: string[] = [];
    const serving = startServe(served(log), { run: 'sleep 30', deps: { runCommand: runShell } });
    await vi.waitFor(async () => expect(await controlNames(dir)).toEqual(['vol0']));
    serving.stop('SIGTERM');
    expect(await serving.done).toBe(143);
    expect(log).toEqual(['close']);
  });
});

describe('serve --pid-file', () => {
  it('writes the pid once the disk is ready and removes it on exit', async () => {
    const pidFile = join(dir, 'vol0.pid');
    const closed: string[] = [];
    const serving = startServe(
      {
        diskPath: '/dev/sdb',
        nodePath: undefined,
        reattached: false,
        stats: () => ({ commands: 0, bytesRead: 0, bytesWritten: 0, errors: 0, inFlight: 0 }),
        close: async () => void closed.push('close'),
        detach: async () => ({ abandoned: 0 }),
        on: () => undefined,
      },
      { pidFile },
    );
    await vi.waitFor(async () => expect(await readFile(pidFile, 'utf8')).toBe(`${process.pid}\n`));
    serving.stop('SIGTERM');
    expect(await serving.done).toBe(0);
    await expect(stat(pidFile)).rejects.toMatchObject({ code: 'ENOENT' });
    // A pid file another process rewrote meanwhile is left to it.
    const remove = await writePidFile(pidFile);
    await writeFile(pidFile, '1\n');
    await remove();
    expect(await readFile(pidFile, 'utf8')).toBe('1\n');
    await expect(writePidFile(join(dir, 'missing', 'x.pid'))).rejects.toMatchObject({
      exitCode: ExitCode.cannotCreate,
    });
    expect(closed).toEqual(['close']);
  });

  it('--log-level takes debug, info, warn or error', () => {
    expect(parseCommandLine(['serve', 'a.img', '--log-level', 'warn'])).toMatchObject({ logLevel: 'warn' });
    expect(() => parseCommandLine(['serve', 'a.img', '--log-level', 'loud'])).toThrow(/--log-level must be/);
  });
});
