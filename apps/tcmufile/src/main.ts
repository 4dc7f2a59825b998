import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { checkEnvironment, type EnvironmentReport, TargetManager } from '@tcmu/configfs';
import {
  configfsChecks,
  doctor,
  environmentError,
  formatCleanup,
  formatDryRun,
  formatInventory,
  missingModules,
  removeStaleNodes,
  staleNodes,
  staleObjects,
} from './admin.js';
import { type Command, parseCommandLine, usage } from './args.js';
import { describeError, ExitCode, exitCodeFor } from './errors.js';
import { prepareImage } from './image.js';
import { prepareRbdImage } from './rbd-image.js';
import { createHumanLogger, createJsonLogger, type Logger } from './log.js';
import { processSecrets } from './iscsi-access.js';
import { serveConfig } from './multi-serve.js';
import { openImageDevice } from './open-device.js';
import { resizeServe, statusOfServes } from './control-commands.js';
import { controlSocketPath, defaultControlDir, startControlServer } from './control.js';
import { startMetricsServer } from './metrics.js';
import { systemdNotifier } from './notify.js';
import { runShell } from './run.js';
import { serve } from './serve.js';
import { stopServe } from './stop.js';

export interface ProcessIo {
  writeOut(text: string): void;
  writeErr(text: string): void;
  /** stderr is a terminal: live status line and human log lines. */
  stderrIsTty: boolean;
}

const processIo: ProcessIo = {
  writeOut: (text) => process.stdout.write(text),
  writeErr: (text) => process.stderr.write(text),
  stderrIsTty: process.stderr.isTTY === true,
};

/** Runs one command line; resolves with the exit code (never throws). */
export async function main(argv: readonly string[], io: ProcessIo = processIo): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    io.writeErr(`${describeError(error)}\n`);
    return exitCodeFor(error);
  }
  // Signals are caught from the start, so a SIGTERM during set-up still leads to a clean close.
  const stop = command.kind === 'serve' || command.kind === 'serve-config' ? catchStopSignals(io) : undefined;
  const level = command.kind === 'serve' ? command.logLevel : undefined;
  const logger = io.stderrIsTty ? createHumanLogger(io.writeErr, level) : createJsonLogger(level);
  try {
    return await run(command, io, logger, stop);
  } catch (error) {
    const exitCode = exitCodeFor(error);
    if (io.stderrIsTty) {
      io.writeErr(`\r\x1b[K${describeError(error)}\n`);
    } else if (exitCode === ExitCode.internal) {
      logger.error({ err: error, exitCode }, error instanceof Error ? error.message : String(error));
    } else {
      // An expected failure: its message and fix, no stack trace.
      const fix = (error as { fix?: unknown } | null)?.fix;
      logger.error({ exitCode, fix }, error instanceof Error ? error.message : String(error));
    }
    return exitCode;
  } finally {
    stop?.release();
  }
}

async function run(
  command: Command,
  io: ProcessIo,
  logger: Logger,
  stop: StopSignals | undefined,
): Promise<number> {
  switch (command.kind) {
    case 'help':
      io.writeOut(`${usage[command.topic ?? 'main']}\n`);
      return ExitCode.ok;
    case 'version':
      io.writeOut(`${readVersion()}\n`);
      return ExitCode.ok;
    case 'doctor': {
      const { text, exitCode } = await doctor(undefined, command.rbd);
      io.writeOut(text);
      return exitCode;
    }
    case 'list': {
      await requireEnvironment(logger, 'configfs');
      const inventory = await new TargetManager().list();
      io.writeOut(command.json ? `${JSON.stringify(inventory, null, 2)}\n` : formatInventory(inventory));
      return ExitCode.ok;
    }
    case 'cleanup': {
      await requireEnvironment(logger, 'configfs');
      const manager = new TargetManager();
      if (command.dryRun) {
        io.writeOut(formatDryRun(staleObjects(await manager.list())));
        return ExitCode.ok;
      }
      const nodes = await staleNodes(manager);
      const report = await manager.cleanup();
      io.writeOut(formatCleanup(report, await removeStaleNodes(nodes, report.removed)));
      return ExitCode.ok;
    }
    case 'stop': {
      await requireEnvironment(logger, 'configfs');
      return stopServe(command, new TargetManager(), io, logger);
    }
    case 'status':
      return statusOfServes(command, io);
    case 'resize':
      return resizeServe(command, io);
    case 'serve': {
      const { controlDir } = command;
      return serve(command, {
        checkEnvironment: () => requireEnvironment(logger, 'serve'),
        prepareImage,
        prepareRbdImage,
        openDevice: openImageDevice,
        waitForStop: () => stop!.signal,
        writeOut: io.writeOut,
        writeStatus: io.stderrIsTty ? io.writeErr : undefined,
        logger,
        statusIntervalMs: io.stderrIsTty ? 1000 : 10_000,
        now: () => performance.now(),
        setInterval: (callback, ms) => setInterval(callback, ms),
        clearInterval: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
        notifier: systemdNotifier({
          onError: (error) =>
            logger.warn({ err: error }, `systemd-notify failed: ${(error as Error).message}`),
        }),
        runCommand: runShell,
        startMetrics: (address, device) =>
          startMetricsServer(address, (registry) => device.registerMetrics?.(registry)),
        ...(controlDir === undefined
          ? {}
          : {
              startControl: (name, handlers) =>
                startControlServer(controlSocketPath(controlDir, name), handlers),
            }),
      });
    }
    case 'serve-config':
      return serveConfig(command, {
        checkEnvironment: () => requireEnvironment(logger, 'serve'),
        prepareImage,
        openDevice: openImageDevice,
        waitForStop: () => stop!.signal,
        writeOut: io.writeOut,
        logger,
        readConfig: (path) => readFile(path, 'utf8'),
        secrets: processSecrets,
        now: () => performance.now(),
        notifier: systemdNotifier({
          onError: (error) =>
            logger.warn({ err: error }, `systemd-notify failed: ${(error as Error).message}`),
        }),
        // One socket per disk, NAME.sock, as a single serve has.
        startControl: (name, handlers) =>
          startControlServer(controlSocketPath(defaultControlDir, name), handlers),
        onReload: (listener) => {
          process.on('SIGHUP', listener);
          return () => process.off('SIGHUP', listener);
        },
      });
  }
}

const execFileAsync = promisify(execFile);

/**
 * Throws the EnvironmentError of the first failed required check. For serve, first tries
 * `modprobe` for required modules that are missing (as targetcli does; not on a kernel without
 * loadable modules), then re-checks; list and cleanup only need root and configfs.
 */
async function requireEnvironment(logger: Logger, purpose: 'serve' | 'configfs'): Promise<void> {
  const loadModules = purpose === 'serve';
  let report: EnvironmentReport = await checkEnvironment();
  const modules = missingModules(report);
  const isRoot = report.checks.some((check) => check.id === 'root' && check.ok);
  if (loadModules && isRoot && modules.length > 0) {
    try {
      await execFileAsync('modprobe', ['-a', ...modules]);
      logger.info({ modules }, `loaded kernel modules ${modules.join(', ')}`);
    } catch (error) {
      const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
      logger.warn(
        { modules, stderr },
        `modprobe ${modules.join(' ')} failed${stderr ? `: ${stderr.split('\n')[0]}` : ''}`,
      );
    }
    report = await checkEnvironment();
  }
  const error = environmentError(report, purpose === 'serve' ? undefined : configfsChecks);
  if (error) throw error;
}

interface StopSignals {
  /** Resolves with the first SIGINT/SIGTERM. */
  signal: Promise<string>;
  release(): void;
}

/**
 * First SIGINT/SIGTERM: clean stop; SIGUSR2: stop leaving the disk (stop --keep). A second
 * signal while stopping: exit at once, saying what is left.
 */
function catchStopSignals(io: ProcessIo): StopSignals {
  let received: string | undefined;
  let resolveSignal!: (signal: string) => void;
  const signal = new Promise<string>((resolve) => {
    resolveSignal = resolve;
  });
  const onSignal = (name: NodeJS.Signals) => {
    if (received === undefined) {
      received = name;
      resolveSignal(name);
      return;
    }
    io.writeErr(
      `\ntcmufile: ${name} again: exiting without cleanup; run \`tcmufile cleanup\` to remove what is left\n`,
    );
    process.exit(ExitCode.internal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGUSR2', onSignal);
  return {
    signal,
    release() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGUSR2', onSignal);
    },
  };
}

function readVersion(): string {
  // ../package.json from both src/main.ts and dist/cli.js.
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
