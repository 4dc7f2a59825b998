import type { BlockBackend } from './backend.js';
import type { ScsiStatusCode } from './status.js';

/**
 * One command as an initiator (or a transport such as the TCMU ring) submits
 * it. A transport may implement it with getters over its own command object:
 * the unit reads each data member at most once, and only for commands whose
 * direction uses it (Data-Out for 'out'/'bidi', Data-In for 'in'/'bidi').
 */
export interface CommandRequest {
  /** The CDB bytes exactly as received (may be longer than the command's CDB length). */
  readonly cdb: Uint8Array;
  /** Data-Out buffer (writes, parameter lists). Empty or absent when none. */
  readonly dataOut?: Uint8Array;
  /**
   * The Data-Out buffer as a scatter list, when the transport has it in
   * several pieces (a ring's iovecs): read instead of `dataOut`, so a WRITE can
   * go to the backend without gathering (`BlockBackend.writev`).
   */
  readonly dataOutSegments?: readonly Uint8Array[] | undefined;
  /** The initiator's Data-In buffer length (bytes it is ready to receive). */
  readonly dataInLength?: number;
  /** I_T nexus identifier; unit attentions are reported once per nexus. */
  readonly nexus?: string;
  /**
   * Memory READ may fill with its Data-In (e.g. the transport's Data-In
   * buffer, one piece or a scatter list): when it holds the whole transfer
   * nothing is allocated or copied. It must stay writable until the command
   * completes, and holds partial data when the command fails.
   */
  readonly dataInBuffer?: Uint8Array | readonly Uint8Array[];
  /**
   * Aborted when the transport aborts the command. Read only when the command
   * waits (a contended range lock, an asynchronous backend) or a handler asks
   * for it, so a transport may offer it as a getter that builds the
   * AbortController on first use.
   */
  readonly signal?: AbortSignal;
  /**
   * Whether the command was aborted, polled instead of `signal.aborted` when
   * present (a getter, so the executor checks without building a signal).
   */
  readonly aborted?: boolean;
}

/** What the target answers. */
export interface CommandResult {
  /** SAM status (see ScsiStatus). */
  readonly status: number;
  /** Sense data (fixed or descriptor format) when status is CHECK CONDITION. */
  readonly sense?: Uint8Array;
  /**
   * Bytes for the initiator; never longer than dataInLength. Absent when READ
   * filled `request.dataInBuffer` in place: the data is there already, and
   * `residual` tells how much of it was produced.
   */
  readonly dataIn?: Uint8Array;
  /** dataInLength minus the Data-In bytes actually produced (SAM-5 residual, underflow); 0 without a Data-In phase. */
  readonly residual: number;
  /**
   * The command's data direction, from the opcode table ('none' when the
   * opcode is unknown): tells a transport that cannot see it (the TCMU ring
   * has one main buffer for both) whether that buffer was Data-In.
   */
  readonly direction: DataDirection;
}

export type DataDirection = 'none' | 'in' | 'out' | 'bidi';

/** The state of an executing command that a handler sees. */
export interface CommandContext<F = unknown> {
  readonly cdb: Uint8Array;
  /** The decoded CDB fields (the entry's `decode` result). */
  readonly fields: F;
  /** Data-Out bytes, contiguous (zero-length when none; gathered on first use from a scatter list). */
  readonly dataOut: Uint8Array;
  /** The Data-Out as the transport's scatter list, when it was one (see CommandRequest.dataOutSegments). */
  readonly dataOutSegments: readonly Uint8Array[] | undefined;
  /** The initiator's Data-In length (0 for commands without Data-In). */
  readonly dataInLength: number;
  /** The caller's memory for Data-In, if any (CommandRequest.dataInBuffer). */
  readonly dataInBuffer?: Uint8Array | readonly Uint8Array[] | undefined;
  readonly nexus: string;
  readonly signal: AbortSignal | undefined;
  readonly unit: LogicalUnitState;
}

/**
 * A handler returns the whole Data-In response (the executor applies the
 * allocation-length rules of SPC-5 4.2.5.6), nothing, when it wrote its
 * Data-In into `ctx.dataInBuffer` in place the number of bytes it wrote, or a
 * status other than GOOD without Data-In. It ends a command with CHECK
 * CONDITION by throwing ScsiCheckCondition.
 */
export type CommandHandler<F = unknown> = (ctx: CommandContext<F>) => HandlerOutput | Promise<HandlerOutput>;

export type HandlerOutput = Uint8Array | number | undefined | StatusOutput;

/** A successful answer other than GOOD, without Data-In (PRE-FETCH's CONDITION MET, SBC-4 5.9). */
export interface StatusOutput {
  readonly status: ScsiStatusCode;
}

/** One row of the opcode table: drives parsing, dispatch, validation and REPORT SUPPORTED OPERATION CODES. */
export interface OpcodeEntry<F = unknown> {
  readonly opcode: number;
  /** Service action (for opcodes that have one, e.g. 0x9E/0x10 READ CAPACITY(16)). */
  readonly serviceAction?: number;
  readonly name: string;
  /** CDB length in bytes (for 0x7F variable-length CDBs: the full length). */
  readonly cdbLength: number;
  readonly direction: DataDirection;
  /**
   * SPC-5 6.35.3 CDB usage data: bit set = the field may be non-zero. Byte 0
   * is the opcode. Bits outside the mask are reserved: INVALID FIELD IN CDB
   * with a field pointer at the first offending bit.
   */
  readonly usage: readonly number[];
  /** Decode (and validate) the CDB; throws ScsiCheckCondition on bad fields. */
  readonly decode: (cdb: Uint8Array) => F;
  /** Encode fields back into CDB bytes (round-trip tests, initiators). */
  readonly encode?: (fields: F) => Uint8Array;
  /** The allocation length of commands that return data (truncates the response). */
  readonly allocationLength?: (fields: F) => number;
  /** Bytes of Data-Out the command expects (parameter list length / transfer length). */
  readonly dataOutLength?: (fields: F, unit: LogicalUnitState) => number;
  readonly handler: CommandHandler<F>;
  /**
   * Whether this unit offers the command (default: always). Both the
   * dispatcher (INVALID COMMAND OPERATION CODE, or INVALID FIELD IN CDB at the
   * service action when sibling service actions remain) and REPORT SUPPORTED
   * OPERATION CODES read it, so the two views agree per unit.
   */
  readonly supported?: (unit: LogicalUnitState) => boolean;
  /**
   * The usage mask for this unit when its abilities turn optional CDB bits
   * off (WRITE SAME's UNMAP bit without a discarding backend). Same length and
   * byte 0 as `usage`; both the CDB check and REPORT SUPPORTED OPERATION CODES use it.
   */
  readonly usageFor?: (unit: LogicalUnitState) => readonly number[];
  /** Runs while a unit attention is pending (INQUIRY, REPORT LUNS, REQUEST SENSE: SAM-5 5.14). */
  readonly reportsNoUnitAttention?: boolean;
  /** Allowed during FORMAT UNIT (INQUIRY, REQUEST SENSE, REPORT LUNS...: SBC-4 4.34). */
  readonly allowedDuringFormat?: boolean;
  /**
   * Allowed during a sanitize operation and after a failed one (SBC-4 4.11.2:
   * INQUIRY, REQUEST SENSE, READ CAPACITY, MODE SENSE of some pages...); a
   * function decides from the CDB. Every other command gets NOT READY /
   * SANITIZE IN PROGRESS, then MEDIUM ERROR / SANITIZE COMMAND FAILED.
   */
  readonly allowedDuringSanitize?: boolean | ((cdb: Uint8Array) => boolean);
  /** A SANITIZE service action: runs after a failed sanitize (SBC-4 4.11.4). */
  readonly sanitizes?: boolean;
  /**
   * Runs on a medium whose last FORMAT UNIT failed (FORMAT UNIT, SANITIZE); other
   * medium-access commands get MEDIUM ERROR / MEDIUM FORMAT CORRUPTED (SBC-4 5.4).
   */
  readonly formatsMedium?: boolean;
  /** Modifies the medium: refused with WRITE PROTECTED on read-only units. */
  readonly writes?: boolean;
  /**
   * Needs the medium ready: refused with NOT READY / INITIALIZING COMMAND
   * REQUIRED while the unit is stopped by START STOP UNIT (SBC-4 4.20).
   * Defaults to `writes`.
   */
  readonly mediumAccess?: boolean;
  /** Nominal and recommended timeouts in seconds (REPORT SUPPORTED OPERATION CODES, RCTD). */
  readonly timeouts?: { readonly nominal: number; readonly recommended: number };
}

/**
 * What handlers may use of the logical unit. Implemented by LogicalUnit
 * (core/unit.ts); pieces are their own modules.
 */
export interface LogicalUnitState {
  readonly backend: BlockBackend;
  readonly config: UnitConfig;
  readonly readOnly: boolean;
  /** Mode parameters (mode/pages.ts ModePageStore): caching WCE, control D_SENSE, ... */
  readonly modes: ModeState;
  /** LBA range locks: reads/writes take 'shared', COMPARE AND WRITE 'exclusive' (sbc/locks.ts). */
  readonly locks: RangeLockManager;
  /** FORMAT UNIT state (sbc/format.ts). */
  readonly format: FormatStatus;
  /** SANITIZE state (sbc/sanitize.ts). */
  readonly sanitize: SanitizeStatus;
  readonly logger: UnitLogger;
  /** Queue a unit attention for every nexus except `except`. */
  raiseUnitAttention(
    reason: 'CAPACITY_DATA_HAS_CHANGED' | 'MODE_PARAMETERS_CHANGED' | 'INQUIRY_DATA_HAS_CHANGED',
    except?: string,
  ): void;
}

/** Static description of the unit, set at creation (all optional with defaults). */
export interface UnitConfig {
  readonly vendor: string; // 8 chars, T10 vendor identification
  readonly product: string; // 16 chars
  readonly revision: string; // 4 chars
  readonly serial: string; // VPD 0x80
  /** 16-byte NAA IEEE Registered Extended designator (type 6) for VPD 0x83. */
  readonly naa: Uint8Array;
  readonly maxTransferBlocks: number; // VPD 0xB0 MAXIMUM TRANSFER LENGTH
  readonly optimalTransferBlocks: number;
  /** VPD 0xB0 MAXIMUM COMPARE AND WRITE LENGTH (0..255; 0: COMPARE AND WRITE not offered). */
  readonly maxCompareAndWriteBlocks: number;
  /** VPD 0xB0 MAXIMUM PREFETCH LENGTH: the most PRE-FETCH accepts and what the backend's cache is taken to hold (0: no limit). */
  readonly maxPrefetchBlocks: number;
  readonly maxWriteSameBlocks: number;
  readonly maxUnmapBlocks: number;
  readonly maxUnmapDescriptors: number;
  readonly unmapGranularity: number;
  /**
   * VPD 0xB0 MAXIMUM ATOMIC TRANSFER LENGTH: WRITE ATOMIC(16) is offered when it (or
   * `maxAtomicTransferBlocksWithBoundary`) is not 0 (default 0). The unit makes such a write
   * atomic against every other command; across a crash only the backend can, so turn it on
   * only over a backend whose writes of that size are all-or-nothing (MemoryBackend: any).
   */
  readonly maxAtomicTransferBlocks: number;
  /** VPD 0xB0 ATOMIC ALIGNMENT: a WRITE ATOMIC's LBA must be a multiple of it (0: any). */
  readonly atomicAlignment: number;
  /** VPD 0xB0 ATOMIC TRANSFER LENGTH GRANULARITY: its length must be a multiple of it (0: any). */
  readonly atomicTransferLengthGranularity: number;
  /** VPD 0xB0 MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY (0: no boundaries). */
  readonly maxAtomicTransferBlocksWithBoundary: number;
  /** VPD 0xB0 MAXIMUM ATOMIC BOUNDARY SIZE (0: ATOMIC BOUNDARY must be 0). */
  readonly maxAtomicBoundaryBlocks: number;
  readonly rotationRate: number; // VPD 0xB1: 1 = non-rotating
  /** Relative target port / port designators reported in VPD 0x83 (optional). */
  readonly targetPort?: { readonly relativePortId: number; readonly name?: string };
  /** EXTENDED COPY between units registered in one CopyManager. */
  readonly extendedCopy: boolean;
  /**
   * The SCSI transport the unit is reached through, when there is exactly one: standard
   * INQUIRY then claims its standard in a version descriptor (SPC-5 6.7.2).
   */
  readonly transportProtocol?: TransportProtocol;
  /** VPD 0xB1 NOMINAL FORM FACTOR (0 = not reported, 1 = 5.25", 2 = 3.5", 3 = 2.5", 4 = 1.8", 5 = < 1.8"). */
  readonly formFactor?: number;
  /** READ CAPACITY(16) LOWEST ALIGNED LOGICAL BLOCK ADDRESS (0 unless the backend is misaligned). */
  readonly lowestAlignedLba?: number;
}

/** SCSI transport protocols with a version descriptor (see UnitConfig.transportProtocol). */
export type TransportProtocol = 'fcp' | 'iscsi' | 'sas' | 'sbp' | 'srp';

export interface ModeState {
  /** Caching mode page WCE: writes may complete before they are durable. */
  readonly writeCacheEnabled: boolean;
  /** Control mode page D_SENSE: report descriptor-format sense. */
  readonly descriptorSense: boolean;
}

export interface RangeLockManager {
  /**
   * Wait until no conflicting holder overlaps [lba, lba+blocks) and take the
   * range; returns the release function. Uncontended calls return it synchronously.
   */
  lock(lba: number, blocks: number, mode: 'shared' | 'exclusive'): (() => void) | Promise<() => void>;
  /**
   * The hot path of a shared lock: true when it is granted at once without
   * recording a range (no exclusive lock held or waited for); then call
   * releaseShared() exactly once. False: use lock().
   */
  tryShared(): boolean;
  releaseShared(): void;
}

export interface FormatStatus {
  /** A FORMAT UNIT is running: other commands get NOT READY / FORMAT IN PROGRESS. */
  readonly active: boolean;
  /** Progress indication 0..65535 (SPC-5 4.4.2.4.4). */
  readonly progress: number;
  /** The last FORMAT UNIT failed (or was aborted): the medium format is corrupted until one succeeds. */
  readonly corrupted: boolean;
}

export interface SanitizeStatus {
  /** A sanitize operation runs: other commands get NOT READY / SANITIZE IN PROGRESS. */
  readonly active: boolean;
  /** Progress indication 0..65535 (SPC-5 4.4.2.4.4). */
  readonly progress: number;
  /** The last sanitize operation failed: commands get SANITIZE COMMAND FAILED until one succeeds or is exited. */
  readonly failed: boolean;
}

/** Injectable logger (pino-compatible subset). */
export interface UnitLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
