import { modeCommands } from '../mode/commands.js';
import { capacityCommands } from '../sbc/capacity.js';
import { compareAndWriteCommands } from '../sbc/compare-and-write.js';
import { defectCommands } from '../sbc/defects.js';
import { formatCommands } from '../sbc/format.js';
import { miscCommands } from '../sbc/misc.js';
import { orWriteEntry } from '../sbc/orwrite.js';
import { prefetchCommands } from '../sbc/prefetch.js';
import { provisioningCommands } from '../sbc/provisioning.js';
import { readWriteCommands } from '../sbc/read-write.js';
import { sanitizeCommands } from '../sbc/sanitize.js';
import { syncCacheCommands } from '../sbc/sync-cache.js';
import { verifyCommands } from '../sbc/verify.js';
import { writeAtomicEntry } from '../sbc/write-atomic.js';
import { inquiryEntry } from '../spc/inquiry.js';
import { logCommands } from '../spc/log.js';
import { reportOpcodesEntry, reportTaskManagementEntry } from '../spc/maintenance-in.js';
import { reportLunsEntry } from '../spc/report-luns.js';
import { requestSenseEntry } from '../spc/request-sense.js';
import { testUnitReadyEntry } from '../spc/test-unit-ready.js';
import { copyCommands } from '../xcopy/commands.js';
import { type AnyOpcodeEntry, OpcodeTable } from './table.js';

export * from './table.js';

/** Every built-in command, SPC then SBC then the copy manager. */
export function builtinEntries(): AnyOpcodeEntry[] {
  return [
    testUnitReadyEntry,
    requestSenseEntry,
    inquiryEntry,
    reportLunsEntry,
    reportOpcodesEntry,
    reportTaskManagementEntry,
    ...logCommands,
    ...modeCommands,
    ...readWriteCommands,
    ...verifyCommands,
    ...syncCacheCommands,
    ...prefetchCommands,
    ...capacityCommands,
    ...miscCommands,
    ...formatCommands,
    ...sanitizeCommands,
    ...provisioningCommands,
    ...compareAndWriteCommands,
    orWriteEntry,
    writeAtomicEntry,
    ...defectCommands,
    ...copyCommands,
  ] as AnyOpcodeEntry[];
}

/**
 * A table of every built-in command plus `extraEntries`, which add commands
 * or replace built-in ones with the same opcode and service action.
 */
export function createOpcodeTable(extraEntries: Iterable<AnyOpcodeEntry> = []): OpcodeTable {
  const table = new OpcodeTable(builtinEntries());
  for (const entry of extraEntries) table.set(entry);
  return table;
}

let shared: OpcodeTable | undefined;

/** The built-in table (built once; units clone it). */
export function defaultOpcodeTable(): OpcodeTable {
  shared ??= createOpcodeTable();
  return shared;
}
