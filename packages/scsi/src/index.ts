/**
 * @tcmu/scsi's public API, all of it: what a transport (TCMU, iSCSI, USB...) needs to serve
 * a logical unit, what a backend implements, and the codecs an initiator-side tool reuses.
 * Anything not listed here is internal and may change in any release (docs/scsi.md).
 */

// The logical unit: a command in, SAM status, sense and Data-In out.
export { LogicalUnit, defaultUnitConfig, naaFromSerial } from './core/unit.js';
export type { LogicalUnitOptions, UnitMiddleware } from './core/unit.js';
export { execute } from './execute.js';
export type {
  CommandRequest,
  CommandResult,
  DataDirection,
  FormatStatus,
  LogicalUnitState,
  ModeState,
  RangeLockManager,
  SanitizeStatus,
  TransportProtocol,
  UnitConfig,
  UnitLogger,
} from './core/command.js';
export { plainIoProfile, type PlainIoProfile } from './core/plain-io.js';
// The types of LogicalUnit's public state (`unit.modes`, `unit.locks`, `unit.format`, `unit.sanitize`).
export type { ModePageStore, PageControl } from './mode/pages.js';
export type { LockMode, RangeLocks, ReleaseLock } from './sbc/locks.js';
export type { FormatState } from './sbc/format.js';
export type { MediumOperationState } from './sbc/medium-operation.js';
export type { SanitizeState } from './sbc/sanitize.js';

// The opcode table: one entry per command drives parsing, dispatch, validation and
// REPORT SUPPORTED OPERATION CODES; `unit.override(entry)` adds or replaces one.
export type {
  CommandContext,
  CommandHandler,
  HandlerOutput,
  OpcodeEntry,
  StatusOutput,
} from './core/command.js';
export { createOpcodeTable, defaultOpcodeTable } from './opcodes/index.js';
export {
  type AnyOpcodeEntry,
  cdbLengthOf,
  OpcodeTable,
  type OpcodeSlot,
  OpcodeTableError,
  serviceActionOf,
} from './opcodes/table.js';

// Status, sense data and the table of sense reasons every error comes from.
export { ScsiStatus, type ScsiStatusCode } from './core/status.js';
export {
  SenseKey,
  type SenseKeyCode,
  type SenseReason,
  type SenseReasonName,
  SenseReasons,
} from './sense/reasons.js';
export {
  type DecodedSense,
  decodeSense,
  encodeSense,
  MAX_SENSE_LENGTH,
  type SenseData,
  SenseDecodeError,
  type SenseFormat,
  senseFor,
} from './sense/sense.js';
export { ascText, senseKeyText } from './sense/asc-text.js';

// Errors. A handler throws ScsiCheckCondition to end a command with CHECK CONDITION.
export { ScsiError } from './core/scsi-error.js';
export {
  type CheckConditionDetails,
  type FieldPointer,
  invalidCdbField,
  invalidParameterField,
  ScsiCheckCondition,
} from './core/errors.js';

// Backends: the storage under a unit (docs/backends.md), and the ones shipped here.
export {
  BackendIoError,
  type BlockBackend,
  type DirectFile,
  type LbaExtent,
  type ProvisioningUsage,
  type WriteOptions,
  isTransientBackendFailure,
  writeFailureReason,
} from './core/backend.js';
export { type BackendCapability, BackendWrapper } from './backends/wrapper.js';
export { MemoryBackend, MemoryBackendConfigError, type MemoryBackendOptions } from './backends/memory.js';
export { ReadOnlyBackend } from './backends/read-only.js';
export {
  FaultInjectionBackend,
  type FaultInjectionOptions,
  type LbaSelector,
} from './backends/fault-injection.js';

// Helpers for transports that hand Data-In/Data-Out as scatter lists.
export { byteLength, type DataBuffer, gather, isPromise, type MaybePromise, scatterInto } from './core/io.js';

// Codecs of the parameter lists an initiator builds (the CDBs' own codecs are each
// opcode entry's `decode`/`encode`), and the structures behind INQUIRY and REPORT LUNS.
export {
  encodeUnmapParameterList,
  parseUnmapParameterList,
  type UnmapDescriptor,
} from './sbc/provisioning.js';
export {
  encodeOverwriteParameters,
  type OverwriteParameters,
  parseOverwriteParameters,
} from './sbc/sanitize.js';
export {
  type BlockSegmentDescriptor,
  type BlockSegmentSpec,
  type CopyTargetDescriptor,
  type CopyTargetSpec,
  encodeExtendedCopyParameters,
  type ExtendedCopyParameters,
  type ListIdUsage,
  parseExtendedCopyParameters,
} from './xcopy/parameters.js';
export { encodeLun } from './spc/report-luns.js';
export { standardInquiry, VpdPage } from './spc/inquiry.js';
export { ModePageCode } from './mode/pages.js';
// EXTENDED COPY between the units registered in one CopyManager (config.extendedCopy).
export { CopyManager, CopyManagerError } from './xcopy/manager.js';
