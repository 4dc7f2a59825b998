import type { CommandContext, LogicalUnitState, OpcodeEntry, SanitizeStatus } from '../core/command.js';
import { be16, putBe16 } from '../core/bytes.js';
import { invalidCdbField, invalidParameterField, ScsiCheckCondition } from '../core/errors.js';
import { writeBlocks } from '../core/io.js';
import { formatStateOf } from './format.js';
import { chunkBlocks, isZero, modifyMedium, zeroMedium } from './medium-access.js';
import { MediumOperationState, sweepMedium } from './medium-operation.js';

const SANITIZE = 0x48;
const CONTROL = 0x00;
const OVERWRITE = 0x01;
const BLOCK_ERASE = 0x02;
const EXIT_FAILURE_MODE = 0x1f;

/**
 * SANITIZE state (SBC-4 4.11): whether a sanitize operation runs and how far it
 * is, and whether the last one failed, in the restricted completion mode
 * (AUSE=0: only a successful sanitize leaves it) or the unrestricted one
 * (AUSE=1: EXIT FAILURE MODE leaves it too).
 */
export class SanitizeState extends MediumOperationState implements SanitizeStatus {
  #failed = false;
  #unrestricted = false;

  /** The last sanitize operation failed: commands get SANITIZE COMMAND FAILED until one succeeds or is exited. */
  get failed(): boolean {
    return this.#failed;
  }

  /** The running (or failed) operation was requested with AUSE=1. */
  get unrestricted(): boolean {
    return this.#unrestricted;
  }

  /** Mark a sanitize operation as started; false if one is already running. */
  begin(unrestricted: boolean): boolean {
    if (!this.start()) return false;
    this.#unrestricted = unrestricted;
    return true;
  }

  /** The operation completed without error. */
  end(): void {
    this.#failed = false;
    this.finish();
  }

  /** The operation failed: the failure mode its AUSE bit chose begins. */
  fail(error: unknown): void {
    this.#failed = true;
    this.finish(error);
  }

  /** EXIT FAILURE MODE: the failed operation counts as completed without error (SBC-4 5.30.2.5). */
  exitFailureMode(): void {
    this.#failed = false;
    this.changed();
  }
}

/** SANITIZE CDB fields (SBC-4 5.30.1). */
export interface SanitizeFields {
  /** IMMED: return status once the CDB and the parameter list are validated. */
  readonly immediate: boolean;
  /** ZNR: for zoned block devices only; this unit is not one, so it is ignored (SBC-4 5.30.1). */
  readonly zonedNoReset: boolean;
  /** AUSE: a failure of this operation may be left with EXIT FAILURE MODE. */
  readonly allowUnrestrictedExit: boolean;
  readonly parameterListLength: number;
  readonly control: number;
}

/** The OVERWRITE service action parameter list (SBC-4 5.30.2.2). */
export interface OverwriteParameters {
  /** INVERT: invert the pattern between consecutive passes. */
  readonly invert: boolean;
  /** TEST: 00b, normal operation (01b-11b select vendor specific test modes; none is offered). */
  readonly test: number;
  /** OVERWRITE COUNT: the number of passes, 1..31. */
  readonly count: number;
  /** INITIALIZATION PATTERN: repeated to fill each block from its first byte; 1..block length bytes. */
  readonly pattern: Uint8Array;
}

const OVERWRITE_HEADER = 4;

/** Parse and validate an OVERWRITE parameter list completely, before anything is written. */
export const parseOverwriteParameters = (data: Uint8Array, blockSize: number): OverwriteParameters => {
  if (data.length < OVERWRITE_HEADER) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  const test = (data[0]! >> 5) & 0x03;
  if (test !== 0) throw invalidParameterField(0, 6);
  const count = data[0]! & 0x1f;
  if (count === 0) throw invalidParameterField(0, 4); // 00h is reserved
  if (data[1] !== 0) throw invalidParameterField(1, 31 - Math.clz32(data[1]!));
  const patternLength = be16(data, 2);
  if (patternLength === 0 || patternLength > blockSize) throw invalidParameterField(2);
  // SPC-5 4.2.5.5: a parameter list length that truncates a field (the pattern) is a length error.
  if (data.length < OVERWRITE_HEADER + patternLength) {
    throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  }
  return {
    invert: (data[0]! & 0x80) !== 0,
    test,
    count,
    pattern: data.slice(OVERWRITE_HEADER, OVERWRITE_HEADER + patternLength),
  };
};

/** Build an OVERWRITE parameter list (initiators, tests). */
export const encodeOverwriteParameters = (p: OverwriteParameters): Uint8Array => {
  const out = new Uint8Array(OVERWRITE_HEADER + p.pattern.length);
  out[0] = (p.invert ? 0x80 : 0) | ((p.test & 0x03) << 5) | (p.count & 0x1f);
  putBe16(out, 2, p.pattern.length);
  out.set(p.pattern, OVERWRITE_HEADER);
  return out;
};

const decode = (cdb: Uint8Array): SanitizeFields => ({
  immediate: (cdb[1]! & 0x80) !== 0,
  zonedNoReset: (cdb[1]! & 0x40) !== 0,
  allowUnrestrictedExit: (cdb[1]! & 0x20) !== 0,
  parameterListLength: be16(cdb, 7),
  control: cdb[9]!,
});

const encoder =
  (serviceAction: number) =>
  (f: SanitizeFields): Uint8Array => {
    const cdb = new Uint8Array(10);
    cdb[0] = SANITIZE;
    cdb[1] =
      (f.immediate ? 0x80 : 0) |
      (f.zonedNoReset ? 0x40 : 0) |
      (f.allowUnrestrictedExit ? 0x20 : 0) |
      serviceAction;
    putBe16(cdb, 7, f.parameterListLength);
    cdb[9] = f.control;
    return cdb;
  };

const sanitizeStateOf = (unit: LogicalUnitState): SanitizeState => {
  if (unit.sanitize instanceof SanitizeState) return unit.sanitize;
  throw new TypeError('SANITIZE needs the unit sanitize state to be a SanitizeState');
};

/** SBC-4 5.30.1: after a failure in the restricted completion mode, a SANITIZE with AUSE=1 is refused. */
const checkCompletionMode = (state: SanitizeState, f: SanitizeFields): void => {
  if (state.failed && !state.unrestricted && f.allowUnrestrictedExit) throw invalidCdbField(1, 5);
};

/**
 * Run a sanitize operation. It ignores the command's abort signal: an ABORT
 * TASK ends the command, never the operation (SBC-4 4.11.3 f). Success makes
 * every block valid again, a corrupted format included; failure begins the
 * failure mode (SBC-4 4.11.4).
 */
const performSanitize = async (
  ctx: CommandContext<SanitizeFields>,
  operation: (state: SanitizeState) => Promise<void>,
): Promise<undefined> => {
  const { unit, fields: f } = ctx;
  const state = sanitizeStateOf(unit);
  const format = formatStateOf(unit);
  // The executor refuses commands during a sanitize; two racing SANITIZEs are caught here.
  if (!state.begin(f.allowUnrestrictedExit)) {
    throw new ScsiCheckCondition('NOT_READY_SANITIZE_IN_PROGRESS', { progress: state.progress });
  }
  const run = operation(state).then(
    () => {
      state.end();
      format.restore();
    },
    (error: unknown) => {
      state.fail(error);
      throw new ScsiCheckCondition('SANITIZE_COMMAND_FAILED', { cause: error });
    },
  );
  if (!f.immediate) {
    await run;
    return undefined;
  }
  // IMMED: GOOD now; a later failure is logged, kept in SanitizeState.lastError and
  // answered SANITIZE COMMAND FAILED until a sanitize succeeds or is exited.
  run.catch((error: unknown) => unit.logger.error({ err: error }, 'background SANITIZE failed'));
  return undefined;
};

/** The PARAMETER LIST LENGTH an OVERWRITE accepts: 5 .. block length + 4 (SBC-4 5.30.2.1). */
const overwriteListLengthValid = (f: SanitizeFields, unit: LogicalUnitState): boolean =>
  f.parameterListLength > OVERWRITE_HEADER &&
  f.parameterListLength <= unit.backend.blockSize + OVERWRITE_HEADER;

/** One chunk of blocks each holding `pattern` repeated from the block's first byte; undefined when all zero. */
const patternChunk = (pattern: Uint8Array, blockSize: number, blocks: number): Uint8Array | undefined => {
  const block = new Uint8Array(blockSize);
  for (let at = 0; at < blockSize; at += pattern.length) {
    block.set(pattern.subarray(0, Math.min(pattern.length, blockSize - at)), at);
  }
  if (isZero(block)) return undefined;
  const chunk = new Uint8Array(blocks * blockSize);
  for (let i = 0; i < blocks; i++) chunk.set(block, i * blockSize);
  return chunk;
};

const overwrite = (ctx: CommandContext<SanitizeFields>): Promise<undefined> => {
  const { unit, fields: f } = ctx;
  if (!overwriteListLengthValid(f, unit)) throw invalidCdbField(7);
  checkCompletionMode(sanitizeStateOf(unit), f);
  const p = parseOverwriteParameters(ctx.dataOut, unit.backend.blockSize);
  const blockSize = unit.backend.blockSize;
  const blocks = Math.min(chunkBlocks(blockSize), unit.backend.blockCount);
  const plain = patternChunk(p.pattern, blockSize, blocks);
  const inverted = p.invert
    ? patternChunk(
        p.pattern.map((b) => ~b & 0xff),
        blockSize,
        blocks,
      )
    : undefined;
  // SBC-4 5.30.2.2: with INVERT the passes alternate and the last one writes the pattern as given.
  const invertedPass = (pass: number): boolean => p.invert && (p.count - 1 - pass) % 2 === 1;
  return performSanitize(ctx, (state) =>
    sweepMedium(
      unit,
      state,
      (lba, n, pass) => {
        const data = invertedPass(pass) ? inverted : plain;
        // A zero pattern leaves the blocks deallocated where they read as zeros (SBC-4 4.11.4 a).
        if (data === undefined) return zeroMedium(unit, lba, n, { deallocate: true, fua: false });
        return writeBlocks(unit, lba, data.subarray(0, n * blockSize), false);
      },
      { passes: p.count },
    ),
  );
};

/**
 * BLOCK ERASE is the backend's deallocation, offered only where deallocated
 * blocks read as zeros: the old data is then gone for every read (VPD B1h
 * WABEREQ 01b). Elsewhere the service action is not supported: INVALID FIELD IN CDB.
 */
const canBlockErase = (unit: LogicalUnitState): boolean =>
  unit.backend.discard !== undefined && unit.backend.unmappedReadsZero === true;

const blockErase = (ctx: CommandContext<SanitizeFields>): Promise<undefined> => {
  const { unit, fields: f } = ctx;
  checkCompletionMode(sanitizeStateOf(unit), f);
  return performSanitize(ctx, (state) =>
    sweepMedium(unit, state, (lba, n) => modifyMedium(lba, undefined, () => unit.backend.discard!(lba, n))),
  );
};

const exitFailureMode = (ctx: CommandContext<SanitizeFields>): undefined => {
  const state = sanitizeStateOf(ctx.unit);
  if (!state.failed) return undefined; // SBC-4 5.30.2.5: nothing failed, nothing to exit
  // SBC-4 5.30.1: a failure in the restricted completion mode is left only by a successful sanitize.
  if (!state.unrestricted) throw invalidCdbField(1, 4);
  state.exitFailureMode();
  formatStateOf(ctx.unit).restore();
  return undefined;
};

/** One SANITIZE service action; only OVERWRITE takes a parameter list (SBC-4 5.30.2.1). */
const sanitizeEntry = (
  serviceAction: number,
  name: string,
  entry: Pick<OpcodeEntry<SanitizeFields>, 'handler'> & Partial<OpcodeEntry<SanitizeFields>>,
): OpcodeEntry<SanitizeFields> => {
  const listLength = serviceAction === OVERWRITE ? 0xff : 0x00;
  return {
    opcode: SANITIZE,
    serviceAction,
    name,
    cdbLength: 10,
    direction: serviceAction === OVERWRITE ? 'out' : 'none',
    // A non-zero PARAMETER LIST LENGTH where none is defined is INVALID FIELD IN CDB at it.
    usage: [SANITIZE, 0xe0 | serviceAction, 0x00, 0x00, 0x00, 0x00, 0x00, listLength, listLength, CONTROL],
    decode,
    encode: encoder(serviceAction),
    sanitizes: true,
    formatsMedium: true,
    // SBC-4 4.11.1: SANITIZE on a write-protected medium is DATA PROTECT.
    writes: true,
    timeouts: { nominal: 60, recommended: 3600 },
    ...entry,
  };
};

const overwriteEntry = sanitizeEntry(OVERWRITE, 'SANITIZE (OVERWRITE)', {
  // An invalid length is refused as a CDB field before any Data-Out is looked at.
  dataOutLength: (f, unit) => (overwriteListLengthValid(f, unit) ? f.parameterListLength : 0),
  handler: overwrite,
});

const blockEraseEntry = sanitizeEntry(BLOCK_ERASE, 'SANITIZE (BLOCK ERASE)', {
  handler: blockErase,
  supported: canBlockErase,
});

const exitFailureModeEntry = sanitizeEntry(EXIT_FAILURE_MODE, 'SANITIZE (EXIT FAILURE MODE)', {
  handler: exitFailureMode,
  // It touches no block, so a stopped unit or a corrupted format does not refuse it.
  mediumAccess: false,
  timeouts: { nominal: 1, recommended: 5 },
});

// CRYPTOGRAPHIC ERASE (03h) has no entry: nothing here encrypts, so it is an unsupported
// service action (INVALID FIELD IN CDB at the service action; VPD B1h WACEREQ 00b).
// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const sanitizeCommands: OpcodeEntry<any>[] = [overwriteEntry, blockEraseEntry, exitFailureModeEntry];
