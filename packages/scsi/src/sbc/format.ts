import type { CommandContext, FormatStatus, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { be16, be32 } from '../core/bytes.js';
import { invalidCdbField, invalidParameterField, ScsiCheckCondition } from '../core/errors.js';
import { zeroMedium } from './medium-access.js';
import { MediumOperationState, sweepMedium } from './medium-operation.js';

const CONTROL = 0x00;

/** FORMAT UNIT state: whether one runs, how far it is, and whether the last one left the format corrupted. */
export class FormatState extends MediumOperationState implements FormatStatus {
  #corrupted = false;

  /** The last format failed: medium access answers MEDIUM FORMAT CORRUPTED until a format succeeds. */
  get corrupted(): boolean {
    return this.#corrupted;
  }

  /** Mark a format as started; false if one is already running. */
  begin(): boolean {
    return this.start();
  }

  /** The format completed: the medium is formatted. */
  end(): void {
    this.#corrupted = false;
    this.finish();
  }

  /** The format failed part way: the medium format is corrupted. */
  fail(error: unknown): void {
    this.#corrupted = true;
    this.finish(error);
  }

  /** A sanitize rewrote or deallocated every block without a FORMAT UNIT: the format is whole again. */
  restore(): void {
    if (!this.#corrupted) return;
    this.#corrupted = false;
    this.changed();
  }
}

/** FORMAT UNIT CDB fields (SBC-4 5.4). */
export interface FormatUnitFields {
  /** FMTPINFO: protection information format (must be zero: no protection). */
  readonly protectionInfo: number;
  /** LONGLIST: the parameter list header is the 8-byte long form. */
  readonly longList: boolean;
  /** FMTDATA: a parameter list follows. */
  readonly formatData: boolean;
  /** CMPLST: the defect list replaces the grown list (no defects are kept: accepted). */
  readonly completeList: boolean;
  readonly defectListFormat: number;
  readonly control: number;
}

/** What the FORMAT UNIT parameter list header asks for. */
export interface FormatParameters {
  /** IMMED: return status at once and format in the background. */
  readonly immediate: boolean;
}

const decode = (cdb: Uint8Array): FormatUnitFields => {
  const f: FormatUnitFields = {
    protectionInfo: cdb[1]! >> 6,
    longList: (cdb[1]! & 0x20) !== 0,
    formatData: (cdb[1]! & 0x10) !== 0,
    completeList: (cdb[1]! & 0x08) !== 0,
    defectListFormat: cdb[1]! & 0x07,
    control: cdb[5]!,
  };
  // No protection information is supported (SBC-4 5.4.2, PROTECT=0 in INQUIRY).
  if (f.protectionInfo !== 0) throw invalidCdbField(1, 7);
  return f;
};

const encode = (f: FormatUnitFields): Uint8Array => {
  const cdb = new Uint8Array(6);
  cdb[0] = 0x04;
  cdb[1] =
    ((f.protectionInfo & 3) << 6) |
    (f.longList ? 0x20 : 0) |
    (f.formatData ? 0x10 : 0) |
    (f.completeList ? 0x08 : 0) |
    (f.defectListFormat & 7);
  cdb[5] = f.control;
  return cdb;
};

/**
 * SBC-4 5.4.3 parameter list header (short: 4 bytes, long: 8 bytes). No
 * protection, no initialization pattern, no defect list are supported.
 */
export const parseFormatParameters = (data: Uint8Array, longList: boolean): FormatParameters => {
  const headerLength = longList ? 8 : 4;
  if (data.length < headerLength) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  if ((data[0]! & 0x07) !== 0) throw invalidParameterField(0, 2); // PROTECTION FIELD USAGE
  if ((data[0]! & 0xf8) !== 0) throw invalidParameterField(0, 7);
  const flags = data[1]!;
  const formatOptionsValid = (flags & 0x80) !== 0; // FOV
  // With FOV=0, DPRY, DCRT, STPF and IP shall be zero (SBC-4 5.4.3.2).
  if (!formatOptionsValid && (flags & 0x78) !== 0)
    throw invalidParameterField(1, 31 - Math.clz32(flags & 0x78));
  if ((flags & 0x08) !== 0) throw invalidParameterField(1, 3); // IP: initialization patterns unsupported
  if ((flags & 0x04) !== 0) throw invalidParameterField(1, 2); // obsolete bit
  if (longList) {
    if (data[2] !== 0) throw invalidParameterField(2, 31 - Math.clz32(data[2]!));
    if (data[3] !== 0) throw invalidParameterField(3, 31 - Math.clz32(data[3]!)); // P_I_INFORMATION / exponent
    if (be32(data, 4) !== 0) throw invalidParameterField(4); // DEFECT LIST LENGTH
  } else if (be16(data, 2) !== 0) throw invalidParameterField(2);
  return { immediate: (flags & 0x02) !== 0 };
};

/** Zero the whole medium; deallocating clears the LBA mapping when unmapped blocks read as zeros. */
const formatMedium = (unit: LogicalUnitState, state: FormatState, signal?: AbortSignal): Promise<void> =>
  sweepMedium(unit, state, (lba, n) => zeroMedium(unit, lba, n, { deallocate: true, fua: false, signal }), {
    signal,
  });

export const formatStateOf = (unit: LogicalUnitState): FormatState => {
  if (unit.format instanceof FormatState) return unit.format;
  throw new TypeError('FORMAT UNIT needs the unit format state to be a FormatState');
};

const formatUnit = async (ctx: CommandContext<FormatUnitFields>): Promise<undefined> => {
  const { unit, fields: f } = ctx;
  const parameters = f.formatData ? parseFormatParameters(ctx.dataOut, f.longList) : { immediate: false };
  const state = formatStateOf(unit);
  // The executor refuses commands during a format; two racing FORMAT UNITs are caught here.
  if (!state.begin())
    throw new ScsiCheckCondition('NOT_READY_FORMAT_IN_PROGRESS', { progress: state.progress });
  const run = formatMedium(unit, state, parameters.immediate ? undefined : ctx.signal).then(
    () => state.end(),
    (error: unknown) => {
      state.fail(error);
      throw error;
    },
  );
  if (!parameters.immediate) {
    await run;
    return undefined;
  }
  // IMMED: GOOD now; a later failure is logged, kept in FormatState.lastError and
  // answered MEDIUM FORMAT CORRUPTED by medium access until a format succeeds.
  run.catch((error: unknown) => unit.logger.error({ err: error }, 'background FORMAT UNIT failed'));
  return undefined;
};

const formatUnitEntry: OpcodeEntry<FormatUnitFields> = {
  opcode: 0x04,
  name: 'FORMAT UNIT',
  cdbLength: 6,
  direction: 'out',
  // Byte 2 is vendor specific; bytes 3-4 are obsolete (interleave).
  usage: [0x04, 0xff, 0x00, 0x00, 0x00, CONTROL],
  decode,
  encode,
  // No parameter list length in the CDB: the header is all a valid list can hold.
  dataOutLength: (f) => (f.formatData ? (f.longList ? 8 : 4) : 0),
  handler: formatUnit,
  formatsMedium: true,
  writes: true,
  timeouts: { nominal: 60, recommended: 3600 },
};

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const formatCommands: OpcodeEntry<any>[] = [formatUnitEntry];
