import { OpcodeSlot } from '../opcodes/table.js';
import { type SenseReason, SenseReasons } from '../sense/reasons.js';
import { senseFor } from '../sense/sense.js';
import { BackendIoError } from './backend.js';
import type {
  CommandContext,
  CommandHandler,
  CommandRequest,
  CommandResult,
  OpcodeEntry,
} from './command.js';
import { type CheckConditionDetails, ScsiCheckCondition } from './errors.js';
import { isPromise } from './io.js';
import { ScsiStatus } from './status.js';
import type { LogicalUnit } from './unit.js';

const EMPTY = new Uint8Array(0);
const GOOD_NO_DATA: CommandResult = Object.freeze({ status: ScsiStatus.GOOD, residual: 0 });
const NO_DETAILS: CheckConditionDetails = Object.freeze({});

type HandlerOutput = Awaited<ReturnType<CommandHandler>>;

/**
 * Execute one command: resolve the opcode, report a pending unit attention,
 * validate the CDB against the entry's usage mask, apply the NOT READY /
 * WRITE PROTECTED rules, decode, check the Data-Out length, run the handler and
 * apply the allocation length. Synchronous when the handler is; never throws.
 */
export function dispatch(unit: LogicalUnit, request: CommandRequest): CommandResult | Promise<CommandResult> {
  if (isAborted(request)) return aborted(request);
  const cdb = request.cdb;
  const nexus = request.nexus ?? '';
  const resolved = unit.table.resolve(cdb, unit);
  const slot = resolved instanceof OpcodeSlot ? resolved : undefined;
  // SAM-5 5.14: every command but INQUIRY, REPORT LUNS and REQUEST SENSE reports a pending UA first.
  if (slot === undefined || !slot.entry.reportsNoUnitAttention) {
    const attention = unit.takeUnitAttention(nexus);
    if (attention !== undefined) return checkCondition(unit, request, attention, NO_DETAILS);
  }
  if (slot === undefined) return fromCheckCondition(unit, request, resolved as ScsiCheckCondition);
  const entry = slot.entry;
  const invalid = slot.checkCdb(cdb, unit);
  if (invalid !== undefined) return fromCheckCondition(unit, request, invalid);
  // SBC-4 4.34: while a FORMAT UNIT runs, only the commands allowed during format run.
  if (unit.format.active && !entry.allowedDuringFormat) {
    return checkCondition(unit, request, SenseReasons.NOT_READY_FORMAT_IN_PROGRESS, {
      progress: unit.format.progress,
    });
  }
  if (unit.stopped && slot.mediumAccess) {
    return checkCondition(unit, request, SenseReasons.NOT_READY_INITIALIZING_COMMAND_REQUIRED, NO_DETAILS);
  }
  // SBC-4 5.4: after a failed FORMAT UNIT only a new FORMAT UNIT may touch the medium.
  if (unit.format.corrupted && slot.mediumAccess && !entry.formatsMedium) {
    return checkCondition(unit, request, SenseReasons.MEDIUM_FORMAT_CORRUPTED, NO_DETAILS);
  }
  if (entry.writes && unit.readOnly) {
    return checkCondition(unit, request, SenseReasons.WRITE_PROTECTED, NO_DETAILS);
  }

  let fields: unknown;
  let output: HandlerOutput | Promise<HandlerOutput>;
  try {
    fields = entry.decode(cdb);
    let dataOut = request.dataOut ?? EMPTY;
    if (entry.dataOutLength !== undefined) {
      const needed = entry.dataOutLength(fields, unit);
      // Kernel transports always deliver the whole Data-Out buffer; a short one is a
      // transport-level error, answered as the kernel does in target_cmd_size_check().
      if (dataOut.length < needed) {
        return checkCondition(
          unit,
          request,
          SenseReasons.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT,
          NO_DETAILS,
        );
      }
      if (dataOut.length > needed) dataOut = dataOut.subarray(0, needed);
    }
    const context = new Context(
      cdb,
      fields,
      dataOut,
      request.dataInLength ?? Number.MAX_SAFE_INTEGER,
      request.dataInBuffer,
      nexus,
      request,
      unit,
    );
    output = entry.handler(context);
  } catch (error) {
    return failure(unit, request, entry, error);
  }
  if (isPromise(output)) {
    return output.then(
      (response) => (isAborted(request) ? aborted(request) : complete(request, entry, fields, response)),
      (error: unknown) => failure(unit, request, entry, error),
    );
  }
  return complete(request, entry, fields, output);
}

/**
 * The handler's view of the command. A class (not a literal with a getter, which
 * V8 builds through the runtime): `signal` is read from the request on demand,
 * since a transport may build it lazily (CommandRequest.signal).
 */
class Context implements CommandContext {
  constructor(
    readonly cdb: Uint8Array,
    readonly fields: unknown,
    readonly dataOut: Uint8Array,
    readonly dataInLength: number,
    readonly dataInBuffer: Uint8Array | undefined,
    readonly nexus: string,
    private readonly request: CommandRequest,
    readonly unit: LogicalUnit,
  ) {}

  get signal(): AbortSignal | undefined {
    return this.request.signal;
  }
}

/**
 * SPC-5 4.2.5.6: the handler built the whole response; return at most the
 * allocation length and at most the initiator's buffer, length fields untouched.
 */
function complete(
  request: CommandRequest,
  entry: OpcodeEntry<unknown>,
  fields: unknown,
  response: HandlerOutput,
): CommandResult {
  const limit = request.dataInLength;
  if (!response || response.length === 0) {
    return limit ? { status: ScsiStatus.GOOD, residual: limit } : GOOD_NO_DATA;
  }
  let length = response.length;
  if (entry.allocationLength !== undefined) length = Math.min(length, entry.allocationLength(fields));
  if (limit !== undefined) length = Math.min(length, limit);
  if (length <= 0) return limit ? { status: ScsiStatus.GOOD, residual: limit } : GOOD_NO_DATA;
  return {
    status: ScsiStatus.GOOD,
    dataIn: length === response.length ? response : response.subarray(0, length),
    residual: limit === undefined ? 0 : limit - length,
  };
}

function failure(
  unit: LogicalUnit,
  request: CommandRequest,
  entry: OpcodeEntry<unknown>,
  error: unknown,
): CommandResult {
  if (isAborted(request)) return aborted(request);
  if (error instanceof ScsiCheckCondition) return fromCheckCondition(unit, request, error);
  if (error instanceof BackendIoError) {
    const reason = entry.writes ? SenseReasons.WRITE_ERROR : SenseReasons.UNRECOVERED_READ_ERROR;
    return checkCondition(
      unit,
      request,
      reason,
      error.lba === undefined ? NO_DETAILS : { information: error.lba },
    );
  }
  return internalFailure(unit, request, error);
}

/** Anything unexpected: logged, answered HARDWARE ERROR / INTERNAL TARGET FAILURE. */
export function internalFailure(unit: LogicalUnit, request: CommandRequest, error: unknown): CommandResult {
  unit.logger.error(
    { err: error, cdb: hexBytes(request.cdb) },
    'internal error while executing a SCSI command',
  );
  return checkCondition(unit, request, SenseReasons.INTERNAL_TARGET_FAILURE, NO_DETAILS);
}

function fromCheckCondition(
  unit: LogicalUnit,
  request: CommandRequest,
  error: ScsiCheckCondition,
): CommandResult {
  const reason = SenseReasons[error.reason] as SenseReason | undefined;
  if (reason === undefined) return internalFailure(unit, request, error);
  return checkCondition(unit, request, reason, error.details);
}

function checkCondition(
  unit: LogicalUnit,
  request: CommandRequest,
  reason: SenseReason,
  details: CheckConditionDetails,
): CommandResult {
  const sense = senseFor(
    reason,
    { information: details.information, fieldPointer: details.fieldPointer, progress: details.progress },
    unit.modes.descriptorSense,
  );
  return { status: ScsiStatus.CHECK_CONDITION, sense, residual: request.dataInLength ?? 0 };
}

const isAborted = (request: CommandRequest): boolean => request.aborted ?? request.signal?.aborted ?? false;

const aborted = (request: CommandRequest): CommandResult => ({
  status: ScsiStatus.TASK_ABORTED,
  residual: request.dataInLength ?? 0,
});

const hexBytes = (bytes: Uint8Array | undefined): string =>
  bytes ? Array.from(bytes.subarray(0, 32), (b) => b.toString(16).padStart(2, '0')).join(' ') : '';
