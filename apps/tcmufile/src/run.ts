import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { RunningCommand } from './serve.js';

/**
 * `/bin/sh -c commandLine`, stdio shared with tcmufile, `env` added to ours. In a process group
 * of its own, so kill() reaches what the shell started too (not only the shell).
 */
export function runShell(commandLine: string, env: Readonly<Record<string, string>>): RunningCommand {
  const child = spawn('/bin/sh', ['-c', commandLine], {
    stdio: 'inherit',
    env: { ...process.env, ...env },
    detached: true,
  });
  const exited = new Promise<number>((resolve) => {
    child.once('error', () => resolve(127));
    // A shell convention: 128 + N for a command killed by signal N.
    child.once('exit', (code, signal) =>
      resolve(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))),
    );
  });
  const kill = (signal: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  return { exited, kill };
}
