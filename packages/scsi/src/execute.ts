import type { CommandRequest, CommandResult } from './core/command.js';
import type { LogicalUnit } from './core/unit.js';

/**
 * Execute one SCSI command against a logical unit: CDB, Data-Out, the
 * initiator's Data-In length, optional nexus and AbortSignal in; SAM status,
 * sense, Data-In and residual out; synchronous when the backend is (await it
 * either way). Never rejects. Same as `unit.execute(request)`.
 */
export function execute(unit: LogicalUnit, request: CommandRequest): CommandResult | Promise<CommandResult> {
  return unit.execute(request);
}
