import type { CommandContext, LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { be32, putBe16, putBe32 } from '../core/bytes.js';
import { invalidCdbField, invalidParameterField, ScsiCheckCondition } from '../core/errors.js';
import { acquireRange, checkLbaRange, readBlocks, writeBlocks } from '../core/io.js';
import { CHUNK_BYTES } from '../sbc/medium-access.js';
import { resolveCopyTarget } from './manager.js';
import {
  BLOCK_SEGMENT_DESCRIPTOR_LENGTH,
  type BlockSegmentDescriptor,
  CopyLimits,
  type ExtendedCopyParameters,
  parseExtendedCopyParameters,
  TARGET_DESCRIPTOR_LENGTH,
} from './parameters.js';

const CONTROL = 0x00;

/** EXTENDED COPY (LID1) CDB fields (SPC-4 6.4). */
export interface ExtendedCopyFields {
  readonly parameterListLength: number;
  readonly control: number;
}

/** RECEIVE COPY RESULTS CDB fields (SPC-4 6.18). */
export interface ReceiveCopyResultsFields {
  readonly serviceAction: number;
  readonly listIdentifier: number;
  readonly allocationLength: number;
  readonly control: number;
}

/** What RECEIVE COPY RESULTS / COPY STATUS reports for a held list identifier. */
interface CopyStatus {
  state: 'running' | 'done' | 'failed';
  segmentsProcessed: number;
  bytesTransferred: number;
}

/** Per unit: copy statuses by `${nexus}\u0000${listIdentifier}` (SPC-4 6.18.3: per I_T nexus). */
const statuses = new WeakMap<LogicalUnitState, Map<string, CopyStatus>>();
const MAX_HELD_STATUSES = 64;

const statusMap = (unit: LogicalUnitState): Map<string, CopyStatus> => {
  let map = statuses.get(unit);
  if (map === undefined) {
    map = new Map();
    statuses.set(unit, map);
  }
  return map;
};

/** 3PC=0 unless the unit is configured for third-party copy: the commands are then unsupported. */
const offersExtendedCopy = (unit: LogicalUnitState): boolean => unit.config.extendedCopy;

interface PlannedSegment {
  readonly segment: BlockSegmentDescriptor;
  readonly source: LogicalUnitState;
  readonly destination: LogicalUnitState;
  readonly bytes: number;
}

/** Resolve every referenced copy target and check each segment's ranges before any data moves. */
const planCopy = (issuer: LogicalUnitState, parameters: ExtendedCopyParameters): PlannedSegment[] => {
  const resolved = new Map<number, LogicalUnitState>();
  const unitFor = (index: number): LogicalUnitState => {
    const cached = resolved.get(index);
    if (cached !== undefined) return cached;
    const target = parameters.targets[index]!;
    const unit = resolveCopyTarget(issuer, target.designator);
    if (unit === undefined || (unit !== issuer && unit.format.active)) {
      throw new ScsiCheckCondition('COPY_TARGET_DEVICE_NOT_REACHABLE');
    }
    // DISK BLOCK LENGTH must describe the unit as it is.
    if (target.blockLength !== unit.backend.blockSize) throw invalidParameterField(target.offset + 29);
    resolved.set(index, unit);
    return unit;
  };
  return parameters.segments.map((segment) => {
    const source = unitFor(segment.source);
    const destination = unitFor(segment.destination);
    const countedIn = segment.destinationCount ? destination : source;
    const bytes = segment.blocks * countedIn.backend.blockSize;
    if (bytes % source.backend.blockSize !== 0 || bytes % destination.backend.blockSize !== 0) {
      throw new ScsiCheckCondition('COPY_SEGMENT_GRANULARITY_VIOLATION');
    }
    checkLbaRange(source, segment.sourceLba, bytes / source.backend.blockSize);
    checkLbaRange(destination, segment.destinationLba, bytes / destination.backend.blockSize);
    if (destination.readOnly) throw new ScsiCheckCondition('WRITE_PROTECTED');
    return { segment, source, destination, bytes };
  });
};

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * Move one segment in chunks: read under a shared lock on the source, then
 * write under a shared lock on the destination. The two locks are never held
 * together, so copies in opposite directions cannot deadlock.
 */
const copySegment = async (plan: PlannedSegment, status: CopyStatus, signal?: AbortSignal): Promise<void> => {
  const { source, destination, segment } = plan;
  const sourceBlockSize = source.backend.blockSize;
  const destinationBlockSize = destination.backend.blockSize;
  const unit = (sourceBlockSize / gcd(sourceBlockSize, destinationBlockSize)) * destinationBlockSize;
  const chunkBytes = Math.max(unit, Math.floor(CHUNK_BYTES / unit) * unit);
  const buffer = new Uint8Array(Math.min(chunkBytes, plan.bytes));
  for (let done = 0; done < plan.bytes; done += chunkBytes) {
    signal?.throwIfAborted();
    const n = Math.min(chunkBytes, plan.bytes - done);
    const data = buffer.subarray(0, n);
    const sourceLba = segment.sourceLba + done / sourceBlockSize;
    const destinationLba = segment.destinationLba + done / destinationBlockSize;
    const releaseSource = await acquireRange(source, sourceLba, n / sourceBlockSize, 'shared', signal);
    try {
      await readBlocks(source, sourceLba, data, signal);
    } finally {
      releaseSource();
    }
    const releaseDestination = await acquireRange(
      destination,
      destinationLba,
      n / destinationBlockSize,
      'shared',
      signal,
    );
    try {
      await writeBlocks(destination, destinationLba, data, false, signal);
    } finally {
      releaseDestination();
    }
    status.bytesTransferred += n;
  }
};

const extendedCopy = async (ctx: CommandContext<ExtendedCopyFields>): Promise<undefined> => {
  const { unit, fields: f, signal } = ctx;
  if (ctx.dataOut.length < f.parameterListLength) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  const parameters = parseExtendedCopyParameters(ctx.dataOut.subarray(0, f.parameterListLength));
  if (parameters === undefined) return undefined; // SPC-4 6.4.1: zero length is not an error
  const held = statusMap(unit);
  const key = `${ctx.nexus}\u0000${parameters.listIdentifier}`;
  // SPC-4 6.4.3.2: with LIST ID USAGE 00b and 10b the LIST IDENTIFIER is valid, so COPY STATUS
  // reports the copy (10b only frees the manager from holding RECEIVE DATA, which it never
  // holds); 11b has no identifier to report under.
  const tracked = parameters.listIdUsage !== 'none';
  // A list identifier still in use on this I_T nexus.
  if (tracked && held.get(key)?.state === 'running') throw new ScsiCheckCondition('OPERATION_IN_PROGRESS');
  const plan = planCopy(unit, parameters);
  const status: CopyStatus = { state: 'running', segmentsProcessed: 0, bytesTransferred: 0 };
  if (tracked) {
    held.delete(key);
    held.set(key, status);
    if (held.size > MAX_HELD_STATUSES) held.delete(held.keys().next().value!);
  }
  try {
    for (const segment of plan) {
      await copySegment(segment, status, signal);
      status.segmentsProcessed++;
    }
    status.state = 'done';
  } catch (error) {
    status.state = 'failed';
    if (signal?.aborted) throw error;
    // SPC-4 6.4.1: a copy target failing ends the copy with COPY ABORTED.
    unit.logger.warn({ err: error, segment: status.segmentsProcessed }, 'EXTENDED COPY segment failed');
    throw new ScsiCheckCondition('THIRD_PARTY_DEVICE_FAILURE', { cause: error });
  }
  return undefined;
};

const extendedCopyEntry: OpcodeEntry<ExtendedCopyFields> = {
  opcode: 0x83,
  serviceAction: 0x00,
  name: 'EXTENDED COPY(LID1)',
  cdbLength: 16,
  direction: 'out',
  usage: [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00, CONTROL],
  decode: (cdb) => ({ parameterListLength: be32(cdb, 10), control: cdb[15]! }),
  encode: (f) => {
    const cdb = new Uint8Array(16);
    cdb[0] = 0x83;
    putBe32(cdb, 10, f.parameterListLength);
    cdb[15] = f.control;
    return cdb;
  },
  dataOutLength: (f) => f.parameterListLength,
  handler: extendedCopy,
  supported: offersExtendedCopy,
  mediumAccess: true,
};

const decodeReceiveCopyResults = (cdb: Uint8Array): ReceiveCopyResultsFields => ({
  serviceAction: cdb[1]! & 0x1f,
  listIdentifier: cdb[2]!,
  allocationLength: be32(cdb, 10),
  control: cdb[15]!,
});

const encodeReceiveCopyResults = (f: ReceiveCopyResultsFields): Uint8Array => {
  const cdb = new Uint8Array(16);
  cdb[0] = 0x84;
  cdb[1] = f.serviceAction & 0x1f;
  cdb[2] = f.listIdentifier;
  putBe32(cdb, 10, f.allocationLength);
  cdb[15] = f.control;
  return cdb;
};

/** SPC-4 6.18.3 COPY STATUS: 12 bytes; transfer count in bytes, or KiB when it does not fit. */
const copyStatus = (ctx: CommandContext<ReceiveCopyResultsFields>): Uint8Array => {
  const status = statusMap(ctx.unit).get(`${ctx.nexus}\u0000${ctx.fields.listIdentifier}`);
  if (status === undefined) throw invalidCdbField(2); // no copy with this list identifier on this nexus
  const out = new Uint8Array(12);
  putBe32(out, 0, out.length - 4); // AVAILABLE DATA
  out[4] = status.state === 'running' ? 0x00 : status.state === 'done' ? 0x01 : 0x02; // COPY MANAGER STATUS
  putBe16(out, 5, Math.min(status.segmentsProcessed, 0xffff));
  let units = 0;
  let count = status.bytesTransferred;
  while (count > 0xffff_ffff) {
    count = Math.floor(count / 1024);
    units++;
  }
  out[7] = units; // TRANSFER COUNT UNITS: 0 bytes, 1 KiB, 2 MiB, ...
  putBe32(out, 8, count);
  return out;
};

const implementedDescriptorTypes = [0x02, 0xe4];

/** SPC-4 6.18.4 OPERATING PARAMETERS: what this copy manager supports. */
const operatingParameters = (ctx: CommandContext<ReceiveCopyResultsFields>): Uint8Array => {
  const blockSize = ctx.unit.backend.blockSize;
  const out = new Uint8Array(44 + implementedDescriptorTypes.length);
  putBe32(out, 0, out.length - 4); // AVAILABLE DATA
  out[4] = 0x01; // SNLID: LIST ID USAGE 11b supported
  putBe16(out, 8, CopyLimits.maxTargetDescriptors);
  putBe16(out, 10, CopyLimits.maxSegmentDescriptors);
  putBe32(
    out,
    12,
    CopyLimits.maxTargetDescriptors * TARGET_DESCRIPTOR_LENGTH +
      CopyLimits.maxSegmentDescriptors * BLOCK_SEGMENT_DESCRIPTOR_LENGTH,
  );
  putBe32(out, 16, Math.min(0xffff * blockSize, 0xffff_ffff)); // MAXIMUM SEGMENT LENGTH (bytes)
  // Inline data, held data and stream transfers: none (bytes 20-31 zero).
  putBe16(out, 34, 0xffff); // TOTAL CONCURRENT COPIES: not limited by the copy manager
  out[36] = 0xff; // MAXIMUM CONCURRENT COPIES
  out[37] = Number.isInteger(Math.log2(blockSize)) ? Math.log2(blockSize) : 0; // DATA SEGMENT GRANULARITY (log2)
  out[43] = implementedDescriptorTypes.length;
  out.set(implementedDescriptorTypes, 44);
  return out;
};

const receiveCopyResultsEntry = (
  serviceAction: number,
  name: string,
  handler: (ctx: CommandContext<ReceiveCopyResultsFields>) => Uint8Array,
): OpcodeEntry<ReceiveCopyResultsFields> => ({
  opcode: 0x84,
  serviceAction,
  name,
  cdbLength: 16,
  direction: 'in',
  usage: [0x84, serviceAction, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00, CONTROL],
  decode: decodeReceiveCopyResults,
  encode: encodeReceiveCopyResults,
  allocationLength: (f) => f.allocationLength,
  handler,
  supported: offersExtendedCopy,
});

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const copyCommands: OpcodeEntry<any>[] = [
  extendedCopyEntry,
  receiveCopyResultsEntry(0x00, 'RECEIVE COPY RESULTS (COPY STATUS)', copyStatus),
  receiveCopyResultsEntry(0x03, 'RECEIVE COPY RESULTS (OPERATING PARAMETERS)', operatingParameters),
];
