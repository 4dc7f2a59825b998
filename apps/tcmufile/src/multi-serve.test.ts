import { describe, expect, it, vi } from 'vitest';
import { ConfigError } from './config.js';
import type { ControlHandlers } from './control.js';
import type { Logger } from './log.js';
import { type ServeConfigDependencies, serveConfig } from './multi-serve.js';
import type { DeviceRequest, ServedDevice } from './serve.js';

const configPath = '/etc/tcmufile/disks.json';

/** An open disk; `events` records what happened to every disk, in order. */
function fakeDevice(name: string, events: string[]): ServedDevice {
  return {
    diskPath: `/dev/sd-${name}`,
    nodePath: `/dev/tcmufile/${name}`,
    reattached: false,
    stats: () => ({ commands: 0, bytesRead: 0, bytesWritten: 0, errors: 0, inFlight: 0 }),
    close: async () => void events.push(`close ${name}`),
    detach: async () => {
      events.push(`detach ${name}`);
      return { abandoned: 0 };
    },
    on: () => undefined,
  };
}

function harness(initial: unknown) {
  let config = JSON.stringify(initial);
  const events: string[] = [];
  const out: string[] = [];
  const messages: string[] = [];
  const requests: DeviceRequest[] = [];
  const failOpen = new Set<string>();
  const controls = new Map<string, ControlHandlers>();
  const closedControls: string[] = [];
  let reload: (() => void) | undefined;
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  const log = (level: string) => (a: object | string, b?: string) =>
    void messages.push(`${level} ${typeof a === 'string' ? a : (b ?? '')}`);
  const logger: Logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
  const deps: ServeConfigDependencies = {
    checkEnvironment: vi.fn(async () => {}),
    prepareImage: vi.fn(async (request) => ({
      path: request.path,
      size: request.size ?? 1 << 20,
      created: false,
      fileSize: request.size ?? 1 << 20,
    })),
    openDevice: vi.fn(async (request: DeviceRequest) => {
      if (failOpen.has(request.name)) throw new Error(`cannot open ${request.name}`);
      requests.push(request);
      events.push(`open ${request.name}`);
      return fakeDevice(request.name, events);
    }),
    waitForStop: () => stopped,
    writeOut: (text) => out.push(text),
    logger,
    now: () => 0,
    startControl: async (name, handlers) => {
      controls.set(name, handlers);
      return {
        path: `/run/tcmufile/${name}.sock`,
        close: async () => {
          if (controls.delete(name)) closedControls.push(name);
        },
      };
    },
    readConfig: async () => config,
    secrets: { env: {}, readFile: async () => ({ text: '{"userid":"u","password":"p"}', mode: 0o100600 }) },
    onReload: (listener) => {
      reload = listener;
      return () => {
        reload = undefined;
      };
    },
  };
  return {
    deps,
    events,
    controls,
    closedControls,
    out,
    messages,
    requests,
    failOpen,
    setConfig: (document: unknown) => {
      config = JSON.stringify(document);
    },
    /** SIGHUP, then wait until its reload has logged its outcome. */
    hup: async () => {
      const before = messages.length;
      reload!();
      await vi.waitFor(() => expect(messages.slice(before).some((m) => m.includes('SIGHUP'))).toBe(true));
    },
    stop: (signal: string) => stop(signal),
    subscribed: () => reload !== undefined,
  };
}

const disk = (name: string, extra: object = {}) => ({
  name,
  image: `/srv/${name}.img`,
  size: '1M',
  ...extra,
});

describe('serve --config', () => {
  it('opens every disk, prints NAME PATH lines, closes them all on SIGTERM', async () => {
    const client = 'iqn.1994-05.com.redhat:client';
    const h = harness({
      dir: '/run/disks',
      disks: [
        disk('a'),
        disk('b', { lun: 2, iscsi: { portal: '127.0.0.1', initiators: [client], chapFile: 'chap.json' } }),
      ],
    });
    const done = serveConfig({ kind: 'serve-config', config: configPath }, h.deps);
    await vi.waitFor(() => expect(h.out).toHaveLength(2));
    expect(h.out).toEqual(['a /dev/tcmufile/a\n', 'b /dev/tcmufile/b\n']);
    expect(h.requests[1]).toMatchObject({
      name: 'b',
      nodeDir: '/run/disks',
      lun: 2,
      iscsi: { host: '127.0.0.1', port: 3260 },
      iscsiInitiators: [{ iqn: client, chap: { userid: 'u', password: 'p' } }],
      image: { path: '/srv/b.img', size: 1 << 20 },
    });
    h.stop('SIGTERM');
    expect(await done).toBe(0);
    expect(h.events).toEqual(['open a', 'open b', 'close a', 'close b']);
    expect(h.subscribed()).toBe(false);
  });

  it('each disk has its control socket: status of that disk, and stop (or --keep) of it alone', async () => {
    const h = harness({ disks: [disk('a'), disk('b'), disk('c')] });
    const done = serveConfig({ kind: 'serve-config', config: configPath }, h.deps);
    await vi.waitFor(() => expect(h.out).toHaveLength(3));
    expect([...h.controls.keys()]).toEqual(['a', 'b', 'c']);
    expect(h.controls.get('b')!.status()).toMatchObject({
      name: 'b',
      image: '/srv/b.img',
      node: '/dev/tcmufile/b',
    });
    expect(await h.controls.get('b')!.stop?.(false)).toEqual({ name: 'b', kept: false });
    expect(await h.controls.get('c')!.stop?.(true)).toEqual({ name: 'c', kept: true });
    expect(h.events).toEqual(['open a', 'open b', 'open c', 'close b', 'detach c']);
    expect(h.closedControls).toEqual(['b', 'c']);
    h.stop('SIGTERM');
    expect(await done).toBe(0);
    expect(h.events.slice(5)).toEqual(['close a']);
    expect(h.closedControls).toEqual(['b', 'c', 'a']);
  });

  it('tells systemd READY once every disk is served, and STOPPING on the stop signal', async () => {
    const h = harness({ disks: [disk('a'), disk('b')] });
    const sent: Array<Record<string, string>> = [];
    let watchdog = 'off';
    h.deps.notifier = {
      send: async (assignments) => void sent.push({ ...assignments }),
      startWatchdog: () => {
        watchdog = 'on';
        return () => {
          watchdog = 'stopped';
        };
      },
    };
    const done = serveConfig({ kind: 'serve-config', config: configPath }, h.deps);
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    expect(sent[0]).toEqual({ READY: '1', STATUS: `serving 2 disks of ${configPath}` });
    expect(h.out).toHaveLength(2);
    expect(watchdog).toBe('on');
    h.stop('SIGTERM');
    expect(await done).toBe(0);
    expect(sent[1]).toEqual({ STOPPING: '1', STATUS: 'SIGTERM: stopping 2 disks' });
    expect(watchdog).toBe('stopped');
  });

  it('a bad config creates nothing: every problem, exit 64, before the environment is even checked', async () => {
    const h = harness({ disks: [disk('a', { size: 'big' }), disk('a'), { name: 'c' }] });
    const error = await serveConfig({ kind: 'serve-config', config: configPath }, h.deps).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(64);
    expect((error as ConfigError).problems).toEqual(['disks[2].image: is required']);
    expect(h.deps.checkEnvironment).not.toHaveBeenCalled();
    expect(h.events).toEqual([]);
  });

  it('closes the disks it opened when a later one fails at start', async () => {
    const h = harness({ disks: [disk('a'), disk('b')] });
    h.failOpen.add('b');
    await expect(serveConfig({ kind: 'serve-config', config: configPath }, h.deps)).rejects.toThrow(
      'cannot open b',
    );
    expect(h.events).toEqual(['open a', 'close a']);
  });

  it('SIGHUP: adds new disks, removes gone ones, reopens changed ones, leaves unchanged ones alone', async () => {
    const h = harness({ disks: [disk('keep'), disk('gone'), disk('change')] });
    const done = serveConfig({ kind: 'serve-config', config: configPath }, h.deps);
    await vi.waitFor(() => expect(h.out).toHaveLength(3));
    h.setConfig({ disks: [disk('change', { readOnly: true }), disk('keep'), disk('new')] });
    await h.hup();
    expect(h.events.slice(3)).toEqual(['close gone', 'close change', 'open change', 'open new']);
    expect(h.requests.at(-2)).toMatchObject({ name: 'change', readOnly: true });
    expect(h.messages.at(-1)).toBe(`info SIGHUP: reloaded ${configPath}: 2 added, 2 removed, 1 unchanged`);

    // The same file again changes nothing.
    await h.hup();
    expect(h.events).toHaveLength(7);
    h.stop('SIGTERM');
    expect(await done).toBe(0);
    expect(h.events.slice(7).sort()).toEqual(['close change', 'close keep', 'close new']);
  });

  it('SIGHUP with a bad config logs every problem and changes nothing', async () => {
    const h = harness({ disks: [disk('a')] });
    const done = serveConfig({ kind: 'serve-config', config: configPath }, h.deps);
    await vi.waitFor(() => expect(h.out).toHaveLength(1));
    h.setConfig({ disks: [disk('b', { blockSize: 100 })] });
    await h.hup();
    expect(h.messages.at(-1)).toBe(
      `error SIGHUP: ${configPath}: disks[0].blockSize: must be one of 512, 4096; nothing changed`,
    );
    expect(h.events).toEqual(['open a']);
    h.stop('SIGTERM');
    await done;
  });

  it('SIGHUP: a disk that fails to open is logged and left out; the others are served', async () => {
    const h = harness({ disks: [disk('a')] });
    const done = serveConfig({ kind: 'serve-config', config: configPath }, h.deps);
    await vi.waitFor(() => expect(h.out).toHaveLength(1));
    h.failOpen.add('bad');
    h.setConfig({ disks: [disk('a'), disk('bad'), disk('c')] });
    await h.hup();
    expect(h.messages).toContain('error adding bad failed: cannot open bad');
    expect(h.messages.at(-1)).toBe(
      `info SIGHUP: reloaded ${configPath}: 1 added, 0 removed, 1 unchanged, 1 failed`,
    );
    expect(h.events).toEqual(['open a', 'open c']);
    h.stop('SIGUSR2');
    await done;
    expect(h.events.slice(2).sort()).toEqual(['detach a', 'detach c']);
  });
});
