import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TargetManager } from '@tcmu/configfs';
import { FakeKernel } from '@tcmu/configfs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ControlHandlers, controlSocketPath, requestControl, startControlServer } from './control.js';
import { CliError, ExitCode } from './errors.js';
import type { Logger } from './log.js';
import { stopServe } from './stop.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const SERVE_PID = 5151;

let kernel: FakeKernel;
let manager: TargetManager;
let controlDir: string;
beforeEach(async () => {
  controlDir = await mkdtemp(join(tmpdir(), 'tcmufile-stop-'));
  kernel = await FakeKernel.create();
  manager = new TargetManager({ fs: kernel, roots: kernel.roots });
  await kernel.spawnProcess(SERVE_PID);
  const serving = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: SERVE_PID });
  await serving.createUserBackstore({ name: 'vol0', size: 1 << 20 });
});
afterEach(async () => {
  await kernel.dispose();
  await rm(controlDir, { recursive: true, force: true });
});

/** A serve process that exits `afterMs` after its signal (the fake /proc entry goes). */
function fakeProcess(afterMs: number) {
  const sent: Array<[number, string]> = [];
  let now = 0;
  return {
    sent,
    deps: {
      kill(pid: number, signal: NodeJS.Signals) {
        sent.push([pid, signal]);
        setTimeout(() => void kernel.killProcess(pid), afterMs);
      },
      sleep: (ms: number) =>
        new Promise<void>((resolve) => {
          now += ms;
          setTimeout(resolve, 1);
        }),
      now: () => now,
      request: requestControl,
    },
  };
}

describe('tcmufile stop', () => {
  it('--keep sends SIGUSR2 to the owner found through its marker and waits until it is gone', async () => {
    const out: string[] = [];
    const proc = fakeProcess(20);
    const code = await stopServe(
      { kind: 'stop', name: 'vol0', keep: true, timeoutS: 5, controlDir },
      manager,
      { writeOut: (text) => out.push(text) },
      quiet,
      proc.deps,
    );
    expect(code).toBe(ExitCode.ok);
    expect(proc.sent).toEqual([[SERVE_PID, 'SIGUSR2']]);
    expect(out).toEqual(['vol0 left in place\n']);
  });

  it('without --keep sends SIGTERM, also when the socket of a single serve answers "by signal"', async () => {
    for (const withSocket of [false, true]) {
      // A single serve's socket has no stop: the whole process stops, by signal.
      const control = withSocket
        ? await startControlServer(controlSocketPath(controlDir, 'vol0'), {
            status: () => ({}),
            resize: async () => ({}),
          })
        : undefined;
      try {
        const proc = fakeProcess(1);
        await stopServe(
          { kind: 'stop', name: 'vol0', keep: false, timeoutS: 5, controlDir },
          manager,
          { writeOut() {} },
          quiet,
          proc.deps,
        );
        expect(proc.sent).toEqual([[SERVE_PID, 'SIGTERM']]);
      } finally {
        await control?.close();
      }
      await kernel.spawnProcess(SERVE_PID);
    }
  });

  it('a disk of a serve --config stops alone through its control socket: no signal', async () => {
    const asked: boolean[] = [];
    const handlers: ControlHandlers = {
      status: () => ({}),
      resize: async () => ({}),
      stop: async (keep) => {
        asked.push(keep);
        return { name: 'vol0', kept: keep };
      },
    };
    const control = await startControlServer(controlSocketPath(controlDir, 'vol0'), handlers);
    try {
      const out: string[] = [];
      const proc = fakeProcess(1);
      for (const keep of [true, false]) {
        const code = await stopServe(
          { kind: 'stop', name: 'vol0', keep, timeoutS: 5, controlDir },
          manager,
          { writeOut: (text) => out.push(text) },
          quiet,
          proc.deps,
        );
        expect(code).toBe(ExitCode.ok);
      }
      expect(asked).toEqual([true, false]);
      expect(proc.sent).toEqual([]);
      expect(out).toEqual(['vol0 left in place\n', 'vol0 stopped\n']);
    } finally {
      await control.close();
    }
  });

  it('says what to do for an unknown name, a dead owner, and an owner that does not exit', async () => {
    const proc = fakeProcess(60_000);
    const attempt = (name: string) =>
      stopServe(
        { kind: 'stop', name, keep: true, timeoutS: 1, controlDir },
        manager,
        { writeOut() {} },
        quiet,
        proc.deps,
      ).catch((error) => error);
    const unknown = await attempt('nope');
    expect(unknown).toBeInstanceOf(CliError);
    expect(unknown.exitCode).toBe(ExitCode.noImage);

    const slow = await attempt('vol0');
    expect(slow.exitCode).toBe(ExitCode.inUse);
    expect(slow.message).toMatch(`pid ${SERVE_PID} is still serving vol0 after 1 s`);

    await kernel.killProcess(SERVE_PID);
    const gone = await attempt('vol0');
    expect(gone.exitCode).toBe(ExitCode.unavailable);
    expect(gone.fix).toMatch(/tcmufile serve/);
  });
});
