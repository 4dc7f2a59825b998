import { execFile } from 'node:child_process';

/**
 * systemd's notification protocol (sd_notify(3)) for `Type=notify` units: newline-separated
 * VAR=VALUE datagrams to the AF_UNIX SOCK_DGRAM socket in $NOTIFY_SOCKET. Node cannot send
 * on a unix datagram socket (node:dgram is UDP only, node:net stream only), so each message
 * goes through systemd's own `systemd-notify VAR=VALUE...`; the unit needs NotifyAccess=all,
 * since the sender is that child, not the main process.
 */
export interface Notifier {
  /** Sends the assignments as one message; failures are logged by the caller's onError. */
  send(assignments: Readonly<Record<string, string>>): Promise<void>;
  /** WATCHDOG=1 every WATCHDOG_USEC/2 while running (when systemd asked for it); returns the stop function. */
  startWatchdog(): () => void;
}

export interface NotifierOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Runs `systemd-notify` (default: execFile from PATH). */
  readonly run?: (file: string, args: readonly string[], env: NodeJS.ProcessEnv) => Promise<void>;
  readonly onError?: (error: unknown) => void;
}

const runFile = (file: string, args: readonly string[], env: NodeJS.ProcessEnv) =>
  new Promise<void>((resolve, reject) => {
    execFile(file, [...args], { env, timeout: 10_000 }, (error) => (error ? reject(error) : resolve()));
  });

/** The notifier of this process, or undefined when systemd did not start it as Type=notify. */
export function systemdNotifier(options: NotifierOptions = {}): Notifier | undefined {
  const env = options.env ?? process.env;
  if (!env.NOTIFY_SOCKET) return undefined;
  const run = options.run ?? runFile;
  const onError = options.onError ?? (() => {});
  const send = async (assignments: Readonly<Record<string, string>>): Promise<void> => {
    // A value is one line: sd_notify separates assignments by newlines.
    const args = Object.entries(assignments).map(([key, value]) => `${key}=${value.replace(/\n/g, ' ')}`);
    await run('systemd-notify', args, env).catch(onError);
  };
  return {
    send,
    startWatchdog() {
      const usec = Number(env.WATCHDOG_USEC);
      const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
      if (!Number.isSafeInteger(usec) || usec <= 0 || !forUs) return () => {};
      const timer = setInterval(() => void send({ WATCHDOG: '1' }), Math.max(1, Math.floor(usec / 2000)));
      timer.unref();
      return () => clearInterval(timer);
    },
  };
}
