import type { TargetManager } from '@tcmu/configfs';
import type { StopCommand } from './args.js';
import { ControlError, requestControl } from './control.js';
import { CliError, ExitCode } from './errors.js';
import type { Logger } from './log.js';
import type { ProcessIo } from './main.js';

export interface StopDependencies {
  kill(pid: number, signal: NodeJS.Signals): void;
  sleep(ms: number): Promise<void>;
  now(): number;
  /** One request to NAME's control socket. */
  request: typeof requestControl;
}

const processDeps: StopDependencies = {
  kill: (pid, signal) => process.kill(pid, signal),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  now: () => Date.now(),
  request: requestControl,
};

/**
 * `tcmufile stop NAME [--keep]`: signals the serve that owns NAME's backstore (its pid
 * from the ownership marker) and waits until that process is gone. SIGTERM removes the
 * disk; SIGUSR2 (--keep) leaves it for the next serve.
 */
export async function stopServe(
  command: StopCommand,
  manager: Pick<TargetManager, 'findUserBackstore' | 'owners'>,
  io: Pick<ProcessIo, 'writeOut'>,
  logger: Logger,
  deps: StopDependencies = processDeps,
): Promise<number> {
  const found = await manager.findUserBackstore(command.name);
  if (found === undefined || !found.tagged) {
    throw new CliError(`no tcmufile device named ${command.name}`, ExitCode.noImage, {
      fix: 'See `tcmufile list` for the devices in configfs.',
    });
  }
  const owner = found.owner;
  if (owner === undefined || !found.ownerAlive) {
    throw new CliError(`${command.name} is not being served (its process is gone)`, ExitCode.unavailable, {
      fix: '`tcmufile serve` of its image takes it over again; `tcmufile cleanup` removes it.',
    });
  }
  // A disk of a serve of several stops alone, through its control socket; a single serve (or
  // one without a socket) stops by signal.
  try {
    const result = (await deps.request(
      command.controlDir,
      command.name,
      { op: 'stop', keep: command.keep },
      command.timeoutS * 1000,
    )) as { bySignal?: boolean };
    if (result.bySignal !== true) {
      io.writeOut(command.keep ? `${command.name} left in place\n` : `${command.name} stopped\n`);
      return ExitCode.ok;
    }
  } catch (error) {
    if (!(error instanceof ControlError) || error.exitCode !== ExitCode.unavailable) throw error;
  }
  const signal: NodeJS.Signals = command.keep ? 'SIGUSR2' : 'SIGTERM';
  deps.kill(owner.pid, signal);
  logger.info(
    { pid: owner.pid, signal },
    `sent ${signal} to tcmufile serve ${command.name} (pid ${owner.pid})`,
  );
  const deadline = deps.now() + command.timeoutS * 1000;
  while (await manager.owners.isAlive(owner)) {
    if (deps.now() >= deadline) {
      throw new CliError(
        `pid ${owner.pid} is still serving ${command.name} after ${command.timeoutS} s`,
        ExitCode.inUse,
        { fix: 'It may be draining slow I/O: wait, or raise --timeout.' },
      );
    }
    await deps.sleep(50);
  }
  io.writeOut(command.keep ? `${command.name} left in place\n` : `${command.name} stopped\n`);
  return ExitCode.ok;
}
