import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { CliError, ExitCode } from './errors.js';

/**
 * `serve --pid-file PATH`: this process's pid, written (atomically: a temporary file renamed
 * over PATH) once the disk is ready. The returned function removes it, if it still names us.
 */
export async function writePidFile(path: string, pid = process.pid): Promise<() => Promise<void>> {
  const temporary = `${path}.${pid}.tmp`;
  try {
    await writeFile(temporary, `${pid}\n`, { mode: 0o644 });
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => {});
    throw new CliError(
      `cannot write --pid-file ${path}: ${(error as Error).message}`,
      ExitCode.cannotCreate,
      {
        fix: 'give a path in an existing, writable directory (e.g. /run/tcmufile/NAME.pid)',
        cause: error,
      },
    );
  }
  return async () => {
    const content = await readFile(path, 'utf8').catch(() => '');
    if (content.trim() === String(pid)) await unlink(path).catch(() => {});
  };
}
