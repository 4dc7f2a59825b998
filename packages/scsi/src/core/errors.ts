import { type SenseReasonName, SenseReasons } from '../sense/reasons.js';
import { ScsiError } from './scsi-error.js';

/**
 * SPC-5 4.4.2.4.2 sense-key-specific field pointer: which byte (and optionally
 * which bit) of the CDB (`inCdb: true`) or of the parameter list was wrong.
 */
export interface FieldPointer {
  readonly inCdb: boolean;
  readonly byte: number;
  /** 0-7; sets BPV. Omit when the whole byte/field is wrong. */
  readonly bit?: number;
}

export interface CheckConditionDetails {
  /** INFORMATION field (LBA of a failed block, miscompare offset...). */
  readonly information?: number | bigint;
  readonly fieldPointer?: FieldPointer;
  /** Progress indication 0..65535 (NOT READY, FORMAT IN PROGRESS). */
  readonly progress?: number;
  /**
   * Data-In transferred before the CHECK CONDITION (a RECOVERED ERROR: READ DEFECT DATA's
   * list in another format, SBC-4 5.19); the executor applies the allocation length.
   */
  readonly dataIn?: Uint8Array;
  readonly cause?: unknown;
}

/**
 * Thrown by command handlers to end a command with CHECK CONDITION. The
 * executor turns it into sense data; it never escapes `execute()`.
 */
export class ScsiCheckCondition extends ScsiError {
  static override readonly brand: string = '@tcmu/scsi.ScsiCheckCondition';
  override readonly name = 'ScsiCheckCondition';

  constructor(
    readonly reason: SenseReasonName,
    readonly details: CheckConditionDetails = {},
  ) {
    super(reason.replaceAll('_', ' '), details.cause === undefined ? undefined : { cause: details.cause });
  }

  get senseReason() {
    return SenseReasons[this.reason];
  }
}

/** INVALID FIELD IN CDB pointing at `byte` (and `bit`) of the CDB. */
export const invalidCdbField = (byte: number, bit?: number): ScsiCheckCondition =>
  new ScsiCheckCondition('INVALID_FIELD_IN_CDB', {
    fieldPointer: bit === undefined ? { inCdb: true, byte } : { inCdb: true, byte, bit },
  });

/** INVALID FIELD IN PARAMETER LIST pointing at `byte` (and `bit`) of the data-out buffer. */
export const invalidParameterField = (byte: number, bit?: number): ScsiCheckCondition =>
  new ScsiCheckCondition('INVALID_FIELD_IN_PARAMETER_LIST', {
    fieldPointer: bit === undefined ? { inCdb: false, byte } : { inCdb: false, byte, bit },
  });
