import type { ResizeCommand, StatusCommand } from './args.js';
import { controlNames, requestControl } from './control.js';
import { ExitCode } from './errors.js';
import type { ProcessIo } from './main.js';
import { formatBytes } from './size.js';
import { formatStatusReport, type StatusReport } from './status.js';

/** `tcmufile status [NAME]`: one serve, or every serve with a socket in the control directory. */
export async function statusOfServes(
  command: StatusCommand,
  io: Pick<ProcessIo, 'writeOut'>,
): Promise<number> {
  const names = command.name === undefined ? await controlNames(command.controlDir) : [command.name];
  const reports: StatusReport[] = [];
  for (const name of names) {
    try {
      reports.push((await requestControl(command.controlDir, name, { op: 'status' })) as StatusReport);
    } catch (error) {
      // A socket left by a killed serve says nothing when listing them all.
      if (command.name !== undefined) throw error;
    }
  }
  if (command.json) io.writeOut(`${JSON.stringify(reports, null, 2)}\n`);
  else if (reports.length === 0)
    io.writeOut(`no running serve has a control socket in ${command.controlDir}\n`);
  else io.writeOut(`${reports.map(formatStatusReport).join('\n')}\n`);
  return ExitCode.ok;
}

/** `tcmufile resize NAME SIZE [--force]`. */
export async function resizeServe(command: ResizeCommand, io: Pick<ProcessIo, 'writeOut'>): Promise<number> {
  const result = (await requestControl(command.controlDir, command.name, {
    op: 'resize',
    size: command.size,
    force: command.force,
  })) as { sizeBytes: number; previousBytes: number };
  const grown = result.sizeBytes > result.previousBytes;
  io.writeOut(
    `${command.name}: ${formatBytes(result.previousBytes)} -> ${formatBytes(result.sizeBytes)}${grown ? '; grow the filesystem on it now (resize2fs, xfs_growfs)' : ''}\n`,
  );
  return ExitCode.ok;
}
