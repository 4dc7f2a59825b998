import { chmod, mkdir, readdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CliError, ExitCode, exitCodeFor } from './errors.js';

/**
 * The control socket of a serving process: a unix stream socket (mode 0600) named after the
 * volume, one JSON request per line, one JSON response line each. `tcmufile status`,
 * `tcmufile resize` and `tcmufile stop` are its clients.
 */
export const defaultControlDir = '/run/tcmufile';

export const controlSocketPath = (dir: string, name: string): string => join(dir, `${name}.sock`);

export type ControlRequest =
  | { op: 'status' }
  | { op: 'resize'; size: number; force: boolean }
  | { op: 'stop'; keep: boolean };

export type ControlResponse =
  | { ok: true; result: unknown }
  | { ok: false; error: string; fix?: string; exitCode?: ExitCode };

export interface ControlHandlers {
  status(): unknown;
  resize(sizeBytes: number, force: boolean): Promise<unknown>;
  /**
   * Stops this one disk of a serve of several (`tcmufile stop NAME [--keep]`); without it the
   * answer is `{ bySignal: true }`: the whole serve stops, by signal.
   */
  stop?(keep: boolean): Promise<unknown>;
}

/** The control socket is unusable, or the serve behind it said no. */
export class ControlError extends CliError {
  static override readonly brand: string = 'tcmufile.ControlError';
  override name = 'ControlError';
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/** Listens on `path` (replacing a socket nobody answers on); requests go to `handlers`. */
export async function startControlServer(path: string, handlers: ControlHandlers): Promise<ControlServer> {
  await mkdir(join(path, '..'), { recursive: true, mode: 0o755 });
  if (await answers(path)) {
    throw new ControlError(`${path} is in use: another serve of this name runs`, ExitCode.inUse, {
      fix: 'stop it first (`tcmufile stop NAME`), or give this serve another --name',
    });
  }
  await unlink(path).catch(() => {});
  const server = createServer((socket) => serveConnection(socket, handlers));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Status and resize are for root (or whoever runs the serve) only.
  await chmod(path, 0o600);
  return { path, close: () => closeServer(server, path) };
}

function serveConnection(socket: Socket, handlers: ControlHandlers): void {
  socket.on('error', () => socket.destroy());
  const lines = createInterface({ input: socket });
  lines.on('error', () => socket.destroy());
  lines.on('line', (line) => {
    void answer(line, handlers).then((response) => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
    });
  });
}

async function answer(line: string, handlers: ControlHandlers): Promise<ControlResponse> {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch {
    return { ok: false, error: 'request is not JSON' };
  }
  const op = (request as { op?: unknown } | null)?.op;
  try {
    if (op === 'status') return { ok: true, result: handlers.status() };
    if (op === 'resize') {
      const { size, force } = request as { size?: unknown; force?: unknown };
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) {
        return { ok: false, error: 'resize needs a positive whole size in bytes' };
      }
      return { ok: true, result: await handlers.resize(size, force === true) };
    }
    if (op === 'stop') {
      if (handlers.stop === undefined) return { ok: true, result: { bySignal: true } };
      return { ok: true, result: await handlers.stop((request as { keep?: unknown }).keep === true) };
    }
    return { ok: false, error: `unknown op ${JSON.stringify(op)}` };
  } catch (error) {
    const fix = (error as { fix?: unknown }).fix;
    return {
      ok: false,
      error: error instanceof Error ? error.message : String(error),
      exitCode: exitCodeFor(error),
      ...(typeof fix === 'string' ? { fix } : {}),
    };
  }
}

async function closeServer(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await unlink(path).catch(() => {});
}

/** True when a process accepts connections on `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** Sends one request to the serve of `name` and returns its result; throws a ControlError. */
export async function requestControl(
  dir: string,
  name: string,
  request: ControlRequest,
  timeoutMs = 30_000,
): Promise<unknown> {
  const path = controlSocketPath(dir, name);
  const line = await new Promise<string>((resolve, reject) => {
    const socket = connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ControlError(`no answer from ${path} in ${timeoutMs / 1000} s`, ExitCode.osError));
    }, timeoutMs);
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(notRunning(name, path, error));
    });
    socket.once('connect', () => {
      // Only once connected: readline re-emits its input's errors (a refused connect).
      const lines = createInterface({ input: socket });
      lines.on('error', () => {});
      lines.once('line', (reply) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(reply);
      });
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new ControlError(`the serve of ${name} hung up without answering`, ExitCode.internal));
    });
  });
  const response = JSON.parse(line) as ControlResponse;
  if (!response.ok) {
    throw new ControlError(response.error, response.exitCode ?? ExitCode.internal, {
      ...(response.fix === undefined ? {} : { fix: response.fix }),
    });
  }
  return response.result;
}

function notRunning(name: string, path: string, error: NodeJS.ErrnoException): ControlError {
  if (error.code === 'EACCES' || error.code === 'EPERM') {
    return new ControlError(`cannot open ${path}: permission denied`, ExitCode.noPermission, {
      fix: 'run as root (the socket is mode 0600)',
    });
  }
  return new ControlError(
    `no serve of ${name} is running (nothing answers on ${path})`,
    ExitCode.unavailable,
    {
      fix: '`tcmufile list` shows the disks; `tcmufile serve IMAGE --name NAME` starts one',
    },
  );
}

/** The names of the serves with a socket in `dir`. */
export async function controlNames(dir: string): Promise<string[]> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  return entries
    .filter((entry) => entry.endsWith('.sock'))
    .map((entry) => entry.slice(0, -'.sock'.length))
    .sort();
}
