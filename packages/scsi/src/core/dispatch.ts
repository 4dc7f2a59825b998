import { allowedDuringSanitize, OpcodeSlot } from '../opcodes/table.js';
import { type SenseReason, SenseReasons } from '../sense/reasons.js';
import { senseFor } from '../sense/sense.js';
import { BackendIoError, isTransientBackendFailure, writeFailureReason } from './backend.js';
import type {
  CommandContext,
  CommandRequest,
  CommandResult,
  DataDirection,
  HandlerOutput,
  OpcodeEntry,
} from './command.js';
import { type CheckConditionDetails, ScsiCheckCondition } from './errors.js';
import { byteLength, gather, isPromise, limitSegments } from './io.js';
import { ScsiStatus } from './status.js';
import type { LogicalUnit } from './unit.js';

const EMPTY = new Uint8Array(0);
const NO_DETAILS: CheckConditionDetails = Object.freeze({});
/** GOOD without Data-In, per direction: the results that need no allocation. */
const GOOD: Readonly<Record<DataDirection, CommandResult>> = Object.freeze({
  none: Object.freeze({ status: ScsiStatus.GOOD, residual: 0, direction: 'none' }),
  in: Object.freeze({ status: ScsiStatus.GOOD, residual: 0, direction: 'in' }),
  out: Object.freeze({ status: ScsiStatus.GOOD, residual: 0, direction: 'out' }),
  bidi: Object.freeze({ status: ScsiStatus.GOOD, residual: 0, direction: 'bidi' }),
});

const carriesDataIn = (direction: DataDirection): boolean => direction === 'in' || direction === 'bidi';
const carriesDataOut = (direction: DataDirection): boolean => direction === 'out' || direction === 'bidi';

/**
 * Execute one command: resolve the opcode (once), report a pending unit
 * attention, validate the CDB against the entry's usage mask, apply the NOT
 * READY / WRITE PROTECTED rules, decode, check the Data-Out length, run the
 * handler and apply the allocation length. Synchronous when the handler is;
 * never throws.
 */
export function dispatch(unit: LogicalUnit, request: CommandRequest): CommandResult | Promise<CommandResult> {
  if (isAborted(request)) return aborted(request, 'none');
  const cdb = request.cdb;
  const nexus = request.nexus ?? '';
  const resolved = unit.table.resolve(cdb, unit);
  const slot = resolved instanceof OpcodeSlot ? resolved : undefined;
  const direction: DataDirection = slot === undefined ? 'none' : slot.entry.direction;
  // SAM-5 5.14: every command but INQUIRY, REPORT LUNS and REQUEST SENSE reports a pending UA first.
  if (slot === undefined || !slot.entry.reportsNoUnitAttention) {
    const attention = unit.takeUnitAttention(nexus);
    if (attention !== undefined) return checkCondition(unit, request, direction, attention, NO_DETAILS);
  }
  if (slot === undefined) return fromCheckCondition(unit, request, direction, resolved as ScsiCheckCondition);
  const entry = slot.entry;
  const invalid = slot.checkCdb(cdb, unit);
  if (invalid !== undefined) return fromCheckCondition(unit, request, direction, invalid);
  // SBC-4 4.34: while a FORMAT UNIT runs, only the commands allowed during format run.
  if (unit.format.active && !entry.allowedDuringFormat) {
    return checkCondition(unit, request, direction, SenseReasons.NOT_READY_FORMAT_IN_PROGRESS, {
      progress: unit.format.progress,
    });
  }
  // SBC-4 4.11.3: while a sanitize runs only the commands allowed during sanitize run; SBC-4 4.11.4:
  // after a failed one those and SANITIZE, until a sanitize succeeds or EXIT FAILURE MODE.
  const sanitize = unit.sanitize;
  if ((sanitize.active || sanitize.failed) && !allowedDuringSanitize(entry, cdb)) {
    if (sanitize.active) {
      return checkCondition(unit, request, direction, SenseReasons.NOT_READY_SANITIZE_IN_PROGRESS, {
        progress: sanitize.progress,
      });
    }
    if (!entry.sanitizes) {
      return checkCondition(unit, request, direction, SenseReasons.SANITIZE_COMMAND_FAILED, NO_DETAILS);
    }
  }
  if (unit.stopped && slot.mediumAccess) {
    return checkCondition(
      unit,
      request,
      direction,
      SenseReasons.NOT_READY_INITIALIZING_COMMAND_REQUIRED,
      NO_DETAILS,
    );
  }
  // SBC-4 5.4: after a failed FORMAT UNIT only a new FORMAT UNIT may touch the medium.
  if (unit.format.corrupted && slot.mediumAccess && !entry.formatsMedium) {
    return checkCondition(unit, request, direction, SenseReasons.MEDIUM_FORMAT_CORRUPTED, NO_DETAILS);
  }
  if (entry.writes && unit.readOnly) {
    return checkCondition(unit, request, direction, SenseReasons.WRITE_PROTECTED, NO_DETAILS);
  }

  let fields: unknown;
  let output: HandlerOutput | Promise<HandlerOutput>;
  try {
    fields = entry.decode(cdb);
    let segments: readonly Uint8Array[] | undefined;
    let dataOut: Uint8Array = EMPTY;
    if (carriesDataOut(direction)) {
      segments = request.dataOutSegments;
      if (segments === undefined) dataOut = request.dataOut ?? EMPTY;
    }
    let dataOutLength = segments === undefined ? dataOut.length : byteLength(segments);
    if (entry.dataOutLength !== undefined) {
      const needed = entry.dataOutLength(fields, unit);
      // Kernel transports always deliver the whole Data-Out buffer; a short one is a
      // transport-level error, answered as the kernel does in target_cmd_size_check().
      if (dataOutLength < needed) {
        return checkCondition(
          unit,
          request,
          direction,
          SenseReasons.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT,
          NO_DETAILS,
        );
      }
      if (dataOutLength > needed) {
        if (segments !== undefined) segments = limitSegments(segments, needed);
        else dataOut = dataOut.subarray(0, needed);
        dataOutLength = needed;
      }
    }
    const dataInLength = carriesDataIn(direction) ? (request.dataInLength ?? Number.MAX_SAFE_INTEGER) : 0;
    const context = new Context(cdb, fields, dataOut, segments, dataOutLength, dataInLength, request, unit);
    output = entry.handler(context);
  } catch (error) {
    return failure(unit, request, entry, error, fields);
  }
  if (isPromise(output)) {
    return output.then(
      (response) =>
        isAborted(request) ? aborted(request, direction) : complete(request, entry, fields, response),
      (error: unknown) => failure(unit, request, entry, error, fields),
    );
  }
  return complete(request, entry, fields, output);
}

/**
 * The handler's view of the command. A class (not a literal with a getter, which
 * V8 builds through the runtime): `signal` and the Data-In memory are read from
 * the request on demand, since a transport may build them lazily, and a
 * scattered Data-Out is gathered only for a handler that wants it contiguous.
 */
class Context implements CommandContext {
  #dataOut: Uint8Array;

  constructor(
    readonly cdb: Uint8Array,
    readonly fields: unknown,
    dataOut: Uint8Array,
    readonly dataOutSegments: readonly Uint8Array[] | undefined,
    private readonly dataOutLength: number,
    readonly dataInLength: number,
    private readonly request: CommandRequest,
    readonly unit: LogicalUnit,
  ) {
    this.#dataOut = dataOut;
  }

  get dataOut(): Uint8Array {
    if (this.dataOutSegments !== undefined && this.#dataOut.length !== this.dataOutLength) {
      this.#dataOut = gather(this.dataOutSegments, this.dataOutLength);
    }
    return this.#dataOut;
  }

  get dataInBuffer(): Uint8Array | readonly Uint8Array[] | undefined {
    return this.request.dataInBuffer;
  }

  get nexus(): string {
    return this.request.nexus ?? '';
  }

  get signal(): AbortSignal | undefined {
    return this.request.signal;
  }
}

/**
 * SPC-5 4.2.5.6: the handler built the whole response; return at most the
 * allocation length and at most the initiator's buffer, length fields untouched.
 * A number is what the handler wrote into the caller's Data-In memory.
 */
function complete(
  request: CommandRequest,
  entry: OpcodeEntry<unknown>,
  fields: unknown,
  response: HandlerOutput,
): CommandResult {
  const direction = entry.direction;
  const limit = direction === 'out' ? undefined : request.dataInLength;
  if (typeof response === 'number') {
    const residual = limit === undefined ? 0 : limit - response;
    return residual === 0 ? GOOD[direction] : { status: ScsiStatus.GOOD, residual, direction };
  }
  if (response !== undefined && !ArrayBuffer.isView(response)) {
    return { status: response.status, residual: limit ?? 0, direction };
  }
  const dataIn = response === undefined ? undefined : limitDataIn(request, entry, fields, response);
  if (dataIn === undefined) {
    return limit ? { status: ScsiStatus.GOOD, residual: limit, direction } : GOOD[direction];
  }
  return {
    status: ScsiStatus.GOOD,
    dataIn,
    residual: limit === undefined ? 0 : limit - dataIn.length,
    direction,
  };
}

/** The part of a response the initiator gets: at most the allocation length and its buffer (SPC-5 4.2.5.6). */
function limitDataIn(
  request: CommandRequest,
  entry: OpcodeEntry<unknown>,
  fields: unknown,
  response: Uint8Array,
): Uint8Array | undefined {
  let length = response.length;
  if (entry.allocationLength !== undefined) length = Math.min(length, entry.allocationLength(fields));
  if (entry.direction !== 'out' && request.dataInLength !== undefined) {
    length = Math.min(length, request.dataInLength);
  }
  if (length <= 0) return undefined;
  return length === response.length ? response : response.subarray(0, length);
}

function failure(
  unit: LogicalUnit,
  request: CommandRequest,
  entry: OpcodeEntry<unknown>,
  error: unknown,
  fields: unknown,
): CommandResult {
  const direction = entry.direction;
  if (isAborted(request)) return aborted(request, direction);
  if (isTransientBackendFailure(error)) return statusOnly(ScsiStatus.BUSY, request, direction);
  if (ScsiCheckCondition.isInstance(error)) {
    // Data-In sent before the CHECK CONDITION (SBC-4 5.19: a defect list in another format).
    const sent = error.details.dataIn;
    const dataIn = sent === undefined ? undefined : limitDataIn(request, entry, fields, sent);
    return fromCheckCondition(unit, request, direction, error, dataIn);
  }
  if (BackendIoError.isInstance(error)) {
    const reason = SenseReasons[entry.writes ? writeFailureReason(error) : 'UNRECOVERED_READ_ERROR'];
    return checkCondition(
      unit,
      request,
      direction,
      reason,
      error.lba === undefined ? NO_DETAILS : { information: error.lba },
    );
  }
  return internalFailure(unit, request, error, direction);
}

/** Anything unexpected: logged, answered HARDWARE ERROR / INTERNAL TARGET FAILURE. */
export function internalFailure(
  unit: LogicalUnit,
  request: CommandRequest,
  error: unknown,
  direction: DataDirection = 'none',
): CommandResult {
  unit.logger.error(
    { err: error, cdb: hexBytes(request.cdb) },
    'internal error while executing a SCSI command',
  );
  return checkCondition(unit, request, direction, SenseReasons.INTERNAL_TARGET_FAILURE, NO_DETAILS);
}

function fromCheckCondition(
  unit: LogicalUnit,
  request: CommandRequest,
  direction: DataDirection,
  error: ScsiCheckCondition,
  dataIn?: Uint8Array,
): CommandResult {
  const reason = SenseReasons[error.reason] as SenseReason | undefined;
  if (reason === undefined) return internalFailure(unit, request, error, direction);
  return checkCondition(unit, request, direction, reason, error.details, dataIn);
}

function checkCondition(
  unit: LogicalUnit,
  request: CommandRequest,
  direction: DataDirection,
  reason: SenseReason,
  details: CheckConditionDetails,
  dataIn?: Uint8Array,
): CommandResult {
  const sense = senseFor(
    reason,
    { information: details.information, fieldPointer: details.fieldPointer, progress: details.progress },
    unit.modes.descriptorSense,
  );
  const residual = residualOf(request, direction);
  if (dataIn === undefined) return { status: ScsiStatus.CHECK_CONDITION, sense, residual, direction };
  return { status: ScsiStatus.CHECK_CONDITION, sense, dataIn, residual: residual - dataIn.length, direction };
}

const isAborted = (request: CommandRequest): boolean => request.aborted ?? request.signal?.aborted ?? false;

/** A status without sense or data (TASK ABORTED, BUSY). */
const statusOnly = (status: number, request: CommandRequest, direction: DataDirection): CommandResult => ({
  status,
  residual: residualOf(request, direction),
  direction,
});

const aborted = (request: CommandRequest, direction: DataDirection): CommandResult =>
  statusOnly(ScsiStatus.TASK_ABORTED, request, direction);

/** A failed command produced no Data-In: the whole Data-In buffer is residual (none for a Data-Out command). */
const residualOf = (request: CommandRequest, direction: DataDirection): number =>
  direction === 'out' ? 0 : (request.dataInLength ?? 0);

const hexBytes = (bytes: Uint8Array | undefined): string =>
  bytes ? Array.from(bytes.subarray(0, 32), (b) => b.toString(16).padStart(2, '0')).join(' ') : '';
