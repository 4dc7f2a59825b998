import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { defaultNodeDir, parseCommandLine, type ServeCommand, usage } from './args.js';
import { EnvironmentError, ExitCode } from './errors.js';
import type { PreparedImage } from './image.js';
import type { Logger } from './log.js';
import { type DeviceRequest, type ServeDependencies, type ServedDevice, serve } from './serve.js';
import type { CounterSnapshot } from './status.js';

const command: ServeCommand = {
  kind: 'serve',
  image: '/tmp/disk.img',
  size: 1 << 30,
  name: 'vol0',
  blockSize: 512,
  readOnly: false,
  dir: '/dev/tcmufile',
  iscsi: undefined,
  queueDepth: undefined,
  io: 'sync',
  commandTimeoutS: undefined,
  followSymlinks: false,
  raw: false,
  thirdPartyCopy: true,
};

interface Recorded {
  level: string;
  fields: object | undefined;
  message: string;
}

function recordingLogger(records: Recorded[]): Logger {
  const method = (level: string) => (a: object | string, b?: string) =>
    records.push(
      typeof a === 'string'
        ? { level, fields: undefined, message: a }
        : { level, fields: a, message: b ?? '' },
    );
  return { debug: method('debug'), info: method('info'), warn: method('warn'), error: method('error') };
}

class FakeDevice implements ServedDevice {
  readonly diskPath = '/dev/sdb';
  nodePath: string | undefined = '/dev/tcmufile/vol0';
  reattached = false;
  detached: Array<{ drainTimeoutMs?: number } | undefined> = [];
  counters: CounterSnapshot = { commands: 0, bytesRead: 0, bytesWritten: 0, errors: 0, inFlight: 0 };
  closed: Array<{ drainTimeoutMs?: number } | undefined> = [];
  errorListeners: Array<(error: Error) => void> = [];
  stats() {
    return { ...this.counters };
  }
  async close(options?: { drainTimeoutMs?: number }) {
    this.closed.push(options);
  }
  async detach(options?: { drainTimeoutMs?: number }) {
    this.detached.push(options);
    return { abandoned: 0 };
  }
  on(_event: 'error', listener: (error: Error) => void) {
    this.errorListeners.push(listener);
    return this;
  }
}

function harness(options: { tty: boolean; image?: Partial<PreparedImage> }) {
  const device = new FakeDevice();
  const out: string[] = [];
  const status: string[] = [];
  const records: Recorded[] = [];
  const requests: DeviceRequest[] = [];
  let clock = 0;
  let tick: (() => void) | undefined;
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  const deps: ServeDependencies = {
    checkEnvironment: vi.fn(async () => {}),
    prepareImage: vi.fn(async (request) => ({
      path: request.path,
      size: request.size ?? 0,
      created: false,
      fileSize: request.size ?? 0,
      ...options.image,
    })),
    openDevice: vi.fn(async (request: DeviceRequest) => {
      requests.push(request);
      return device;
    }),
    waitForStop: () => stopped,
    writeOut: (text) => out.push(text),
    writeStatus: options.tty ? (text) => status.push(text) : undefined,
    logger: recordingLogger(records),
    statusIntervalMs: options.tty ? 1000 : 10_000,
    now: () => clock,
    setInterval: (callback) => {
      tick = callback;
      return {};
    },
    clearInterval: () => {
      tick = undefined;
    },
  };
  const advance = (ms: number) => {
    clock += ms;
    tick?.();
  };
  return { device, deps, out, status, records, requests, advance, stop: (signal: string) => stop(signal) };
}

describe('serve', () => {
  it('gives the device the iSCSI ACLs with CHAP from the environment, checked before anything else', async () => {
    const h = harness({ tty: false });
    const client = 'iqn.1994-05.com.redhat:client';
    const access = { initiators: [client], chapFile: undefined, insecureDemoMode: false };
    const iscsiCommand = { ...command, iscsi: { host: '127.0.0.1', port: 3260 }, iscsiAccess: access };
    h.deps.secrets = { env: { TCMUFILE_CHAP_USER: 'u' }, readFile: vi.fn() };
    await expect(serve(iscsiCommand, h.deps)).rejects.toThrow(/TCMUFILE_CHAP_PASSWORD is missing/);
    expect(h.deps.checkEnvironment).not.toHaveBeenCalled();

    h.deps.secrets = { env: { TCMUFILE_CHAP_USER: 'u', TCMUFILE_CHAP_PASSWORD: 'p' }, readFile: vi.fn() };
    const done = serve(iscsiCommand, h.deps);
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    expect(h.requests[0]!.iscsiInitiators).toEqual([{ iqn: client, chap: { userid: 'u', password: 'p' } }]);
    h.stop('SIGTERM');
    expect(await done).toBe(0);
  });

  it('prints the node path alone on stdout, shows a live line, closes on the signal and exits 0', async () => {
    const h = harness({ tty: true });
    const done = serve(command, h.deps);
    await vi.waitFor(() => expect(h.out).toEqual(['/dev/tcmufile/vol0\n']));
    expect(h.requests[0]).toMatchObject({
      name: 'vol0',
      blockSize: 512,
      readOnly: false,
      nodeDir: '/dev/tcmufile',
      image: { path: '/tmp/disk.img', size: 1 << 30 },
      io: 'sync',
    });
    expect(h.status[0]).toContain('0 IOPS');

    h.device.counters = { commands: 2500, bytesRead: 10_000_000, bytesWritten: 0, errors: 1, inFlight: 4 };
    h.advance(1000);
    expect(h.status.at(-1)).toBe(
      '\r/dev/sdb vol0 | 2.50k IOPS | read 10.0 MB/s | write 0.0 MB/s | in flight 4 | errors 1\x1b[K',
    );
    h.stop('SIGTERM');
    expect(await done).toBe(0);
    expect(h.device.closed).toEqual([{ drainTimeoutMs: 10_000 }]);
    expect(h.status.at(-1)).toBe('\n'); // the live line is ended before the goodbye
    expect(h.records.map((r) => r.message)).toContainEqual(expect.stringMatching(/^SIGTERM: stopping vol0/));
    expect(h.out).toHaveLength(1);
    // `name` belongs to pino (the logger's name): the volume goes under its own key.
    const serving = h.records.find((r) => r.message.startsWith('serving '))!;
    expect(serving.fields).toMatchObject({ volume: 'vol0', disk: '/dev/sdb', node: '/dev/tcmufile/vol0' });
    expect(serving.fields).not.toHaveProperty('name');
  });

  it('prints the device node its --help promises: DIR/NAME, /dev/tcmufile/NAME by default', async () => {
    const [, printed = '', byDefault] =
      /prints its device node (\S+) \((\S+) by default/.exec(usage.serve.replace(/\s+/g, ' ')) ?? [];
    expect([printed, byDefault]).toEqual(['DIR/NAME', `${defaultNodeDir}/NAME`]);
    for (const argv of [['/srv/disk.img'], ['/srv/disk.img', '--dir', '/run/disks', '--name', 'vol7']]) {
      const parsed = parseCommandLine(['serve', ...argv]) as ServeCommand;
      const h = harness({ tty: false });
      h.deps.openDevice = async (request) => {
        // @tcmu/device makes its node at join(nodeDir, name).
        h.device.nodePath = join(request.nodeDir, request.name);
        return h.device;
      };
      const done = serve(parsed, h.deps);
      await vi.waitFor(() => expect(h.out).toHaveLength(1));
      expect(h.out[0]).toBe(`${printed.replace('DIR', parsed.dir).replace('NAME', parsed.name)}\n`);
      h.stop('SIGTERM');
      await done;
    }
    expect(parseCommandLine(['serve', '/srv/disk.img'])).toMatchObject({ dir: defaultNodeDir, name: 'disk' });
  });

  it('SIGUSR2 detaches (the disk stays for the next serve) instead of closing, and exits 0', async () => {
    const h = harness({ tty: false });
    const done = serve(command, h.deps);
    await vi.waitFor(() => expect(h.out).toHaveLength(1));
    h.stop('SIGUSR2');
    expect(await done).toBe(0);
    expect(h.device.detached).toEqual([{ drainTimeoutMs: 10_000 }]);
    expect(h.device.closed).toEqual([]);
    expect(h.records.map((r) => r.message)).toContainEqual(
      expect.stringMatching(
        /^left \/dev\/tcmufile\/vol0 -> \/dev\/sdb in place; `tcmufile serve \/tmp\/disk.img --name vol0` takes it over/,
      ),
    );
  });

  it('says so when it took over the disk an earlier serve left', async () => {
    const h = harness({ tty: false });
    h.device.reattached = true;
    const done = serve({ ...command, commandTimeoutS: 120 }, h.deps);
    await vi.waitFor(() => expect(h.out).toHaveLength(1));
    expect(h.requests[0]?.commandTimeoutS).toBe(120);
    expect(h.records.map((r) => r.message)).toContainEqual(
      expect.stringMatching(/^serving again \(took over the disk an earlier tcmufile left\)/),
    );
    h.stop('SIGTERM');
    expect(await done).toBe(0);
  });

  it('logs activity records instead of a live line when not on a terminal', async () => {
    const h = harness({ tty: false });
    const done = serve(command, h.deps);
    await vi.waitFor(() => expect(h.out).toHaveLength(1));
    h.advance(10_000); // idle: nothing logged
    expect(h.records.filter((r) => r.message === 'activity')).toHaveLength(0);
    h.device.counters = { commands: 10_000, bytesRead: 0, bytesWritten: 50_000_000, errors: 0, inFlight: 1 };
    h.advance(10_000);
    const activity = h.records.filter((r) => r.message === 'activity');
    expect(activity).toEqual([
      {
        level: 'info',
        message: 'activity',
        fields: { iops: 1000, readMBps: 0, writeMBps: 5, inFlight: 1, errors: 0 },
      },
    ]);
    h.stop('SIGINT');
    expect(await done).toBe(0);
    expect(h.status).toEqual([]);
  });

  it('logs device errors and keeps serving', async () => {
    const h = harness({ tty: false });
    const done = serve(command, h.deps);
    await vi.waitFor(() => expect(h.device.errorListeners).toHaveLength(1));
    h.device.errorListeners[0]!(new Error('ring hiccup'));
    expect(h.records.find((r) => r.level === 'error')?.message).toBe('device error: ring hiccup');
    h.stop('SIGTERM');
    expect(await done).toBe(0);
  });

  it('stops before touching the image when the environment check fails', async () => {
    const h = harness({ tty: false });
    h.deps.checkEnvironment = async () => {
      throw new EnvironmentError('must run as root', ExitCode.noPermission);
    };
    await expect(serve(command, h.deps)).rejects.toThrow('must run as root');
    expect(h.deps.prepareImage).not.toHaveBeenCalled();
    expect(h.deps.openDevice).not.toHaveBeenCalled();
    expect(h.out).toEqual([]);
  });

  it('prints nothing on stdout when opening the device fails', async () => {
    const h = harness({ tty: false });
    h.deps.openDevice = async () => {
      throw new Error('setup failed');
    };
    await expect(serve(command, h.deps)).rejects.toThrow('setup failed');
    expect(h.out).toEqual([]);
  });

  it('says when it created the image and when it serves only part of it', async () => {
    const created = harness({ tty: false, image: { created: true } });
    const first = serve(command, created.deps);
    await vi.waitFor(() => expect(created.out).toHaveLength(1));
    created.stop('SIGTERM');
    await first;
    expect(created.records[0]?.message).toBe('created sparse image /tmp/disk.img');

    const partial = harness({ tty: false, image: { fileSize: 2 * 2 ** 30 } });
    const second = serve(command, partial.deps);
    await vi.waitFor(() => expect(partial.out).toHaveLength(1));
    partial.stop('SIGTERM');
    await second;
    expect(partial.records.find((r) => r.level === 'warn')?.message).toBe(
      'serving the first 1 GiB of the 2 GiB image',
    );
  });
});
