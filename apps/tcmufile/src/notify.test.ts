import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemdNotifier } from './notify.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('systemdNotifier', () => {
  it('is off without NOTIFY_SOCKET', () => {
    expect(systemdNotifier({ env: {} })).toBeUndefined();
  });

  it('runs systemd-notify with one line per assignment, and WATCHDOG=1 every WATCHDOG_USEC/2', async () => {
    vi.useFakeTimers();
    const calls: string[][] = [];
    const notifier = systemdNotifier({
      env: {
        NOTIFY_SOCKET: '/run/systemd/notify',
        WATCHDOG_USEC: '4000000',
        WATCHDOG_PID: String(process.pid),
      },
      run: async (file, args) => void calls.push([file, ...args]),
    })!;
    await notifier.send({ READY: '1', STATUS: 'serving\nx' });
    expect(calls).toEqual([['systemd-notify', 'READY=1', 'STATUS=serving x']]);
    const stop = notifier.startWatchdog();
    vi.advanceTimersByTime(4000);
    expect(calls.slice(1)).toEqual([
      ['systemd-notify', 'WATCHDOG=1'],
      ['systemd-notify', 'WATCHDOG=1'],
    ]);
    stop();
    vi.advanceTimersByTime(4000);
    expect(calls).toHaveLength(3);
    const other = systemdNotifier({
      env: { NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '1000', WATCHDOG_PID: '1' },
      run: async (file, args) => void calls.push([file, ...args]),
    })!;
    other.startWatchdog();
    vi.advanceTimersByTime(10);
    expect(calls).toHaveLength(3); // the watchdog is another process's
  });

  it('reaches a NOTIFY_SOCKET datagram listener through systemd-notify', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tcmufile-notify-'));
    const socket = join(dir, 'notify');
    // The fake systemd: a unix datagram socket printing each message (and closing passed fds: BARRIER=1).
    const listener = spawn('python3', [
      '-c',
      [
        'import socket, sys, os, array',
        's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
        `s.bind(${JSON.stringify(socket)})`,
        's.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)',
        'print("bound", flush=True)',
        'while True:',
        '    data, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64))',
        '    for level, kind, payload in anc:',
        '        if kind == socket.SCM_RIGHTS:',
        '            for fd in array.array("i", payload[: len(payload) - len(payload) % 4]): os.close(fd)',
        '    print(repr(data.decode()), flush=True)',
      ].join('\n'),
    ]);
    try {
      const lines = createInterface({ input: listener.stdout });
      const received: string[] = [];
      const bound = new Promise<void>((resolve) =>
        lines.on('line', (line) => (line === 'bound' ? resolve() : received.push(line))),
      );
      await bound;
      const errors: unknown[] = [];
      const notifier = systemdNotifier({
        env: { ...process.env, NOTIFY_SOCKET: socket },
        onError: (error) => errors.push(error),
      })!;
      await notifier.send({ READY: '1', STATUS: 'serving /srv/disk.img' });
      expect(errors).toEqual([]);
      await vi.waitFor(() => expect(received).toContain(`'READY=1\\nSTATUS=serving /srv/disk.img'`));
    } finally {
      listener.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
