/**
 * Running the tools a kernel test drives (sg3_utils, dd, fio...). Every command runs
 * asynchronously: the test's own process answers the SCSI commands those tools send,
 * so a synchronous spawn would deadlock.
 */
import { execFile } from 'node:child_process';

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command without blocking the event loop; never rejects on a non-zero exit. */
export function run(command: string, args: readonly string[], timeoutMs = 240_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { timeout: timeoutMs, maxBuffer: 64 << 20, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(new Error(`${command} ${args.join(' ')} failed to run: ${error.message}\n${stderr}`));
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}

/** Like run(), but a non-zero exit fails the test with the tool's output. */
export async function ok(command: string, args: readonly string[], timeoutMs?: number): Promise<string> {
  const result = await run(command, args, timeoutMs);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

export const sh = (script: string, timeoutMs?: number): Promise<string> =>
  ok('bash', ['-euo', 'pipefail', '-c', script], timeoutMs);

/** Runs a command and returns its stdout as bytes (for --raw output). */
export function runRaw(command: string, args: readonly string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: 'buffer', maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')}: ${error.message}\n${stderr.toString()}`));
      else resolve(stdout);
    });
  });
}
