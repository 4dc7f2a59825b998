import { TargetManager } from '@tcmu/configfs';
import { FakeKernel } from '@tcmu/configfs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CliError, ExitCode } from './errors.js';
import type { Logger } from './log.js';
import { stopServe } from './stop.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const SERVE_PID = 5151;

let kernel: FakeKernel;
let manager: TargetManager;
beforeEach(async () => {
  kernel = await FakeKernel.create();
  manager = new TargetManager({ fs: kernel, roots: kernel.roots });
  await kernel.spawnProcess(SERVE_PID);
  const serving = new TargetManager({ fs: kernel, roots: kernel.roots, ownerPid: SERVE_PID });
  await serving.createUserBackstore({ name: 'vol0', size: 1 << 20 });
});
afterEach(async () => {
  await kernel.dispose();
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
    },
  };
}

describe('tcmufile stop', () => {
  it('--keep sends SIGUSR2 to the owner found through its marker and waits until it is gone', async () => {
    const out: string[] = [];
    const proc = fakeProcess(20);
    const code = await stopServe(
      { kind: 'stop', name: 'vol0', keep: true, timeoutS: 5 },
      manager,
      { writeOut: (text) => out.push(text) },
      quiet,
      proc.deps,
    );
    expect(code).toBe(ExitCode.ok);
    expect(proc.sent).toEqual([[SERVE_PID, 'SIGUSR2']]);
    expect(out).toEqual(['vol0 left in place\n']);
  });

  it('without --keep sends SIGTERM', async () => {
    const proc = fakeProcess(1);
    await stopServe(
      { kind: 'stop', name: 'vol0', keep: false, timeoutS: 5 },
      manager,
      { writeOut() {} },
      quiet,
      proc.deps,
    );
    expect(proc.sent).toEqual([[SERVE_PID, 'SIGTERM']]);
  });

  it('says what to do for an unknown name, a dead owner, and an owner that does not exit', async () => {
    const proc = fakeProcess(60_000);
    const attempt = (name: string) =>
      stopServe(
        { kind: 'stop', name, keep: true, timeoutS: 1 },
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
