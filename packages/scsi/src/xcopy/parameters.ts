import { be16, be24, be32, be64, putBe16, putBe24, putBe32, putBe64 } from '../core/bytes.js';
import { invalidParameterField, ScsiCheckCondition } from '../core/errors.js';

/** Limits this copy manager reports in RECEIVE COPY RESULTS / OPERATING PARAMETERS. */
export const CopyLimits = {
  maxTargetDescriptors: 8,
  maxSegmentDescriptors: 32,
} as const;

export const TARGET_DESCRIPTOR_LENGTH = 32;
export const BLOCK_SEGMENT_DESCRIPTOR_LENGTH = 28;
const HEADER_LENGTH = 16;

/** SPC-4 6.4.3.2 LIST ID USAGE. */
export type ListIdUsage = 'hold' | 'no-hold' | 'none';

/** An identification CSCD descriptor (0xE4): a logical unit by its NAA designator. */
export interface CopyTargetDescriptor {
  /** Byte offset of the descriptor in the parameter list (field pointers). */
  readonly offset: number;
  readonly designator: Uint8Array;
  /** DISK BLOCK LENGTH from the device-type-specific parameters. */
  readonly blockLength: number;
}

/** A block device to block device segment descriptor (0x02). */
export interface BlockSegmentDescriptor {
  readonly offset: number;
  /** DC: the block count is in destination blocks (else source blocks). */
  readonly destinationCount: boolean;
  readonly cat: boolean;
  readonly source: number;
  readonly destination: number;
  readonly blocks: number;
  readonly sourceLba: number;
  readonly destinationLba: number;
}

export interface ExtendedCopyParameters {
  readonly listIdentifier: number;
  readonly listIdUsage: ListIdUsage;
  readonly sequentialStriped: boolean;
  readonly priority: number;
  readonly targets: readonly CopyTargetDescriptor[];
  readonly segments: readonly BlockSegmentDescriptor[];
}

const highestBit = (value: number): number => 31 - Math.clz32(value);

const rejectReserved = (data: Uint8Array, at: number, mask: number): void => {
  const bad = data[at]! & mask;
  if (bad !== 0) throw invalidParameterField(at, highestBit(bad));
};

/** SPC-4 6.4.5.2 + 6.4.5.? identification descriptor CSCD (0xE4). */
const parseTarget = (data: Uint8Array, at: number): CopyTargetDescriptor => {
  if (data[at] !== 0xe4) {
    throw new ScsiCheckCondition('UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE', {
      fieldPointer: { inCdb: false, byte: at },
    });
  }
  // LU ID TYPE 00b (LUN) only; NUL=1 (a null device) is not supported.
  rejectReserved(data, at + 1, 0xe0);
  // Only direct-access block devices (peripheral device type 0) are copy targets here.
  if ((data[at + 1]! & 0x1f) !== 0) {
    throw new ScsiCheckCondition('COPY_ABORTED_INCORRECT_COPY_TARGET_DEVICE_TYPE', {
      fieldPointer: { inCdb: false, byte: at + 1, bit: 4 },
    });
  }
  // Designation descriptor (SPC-5 7.7.6.1): binary code set, LU association, NAA designator type.
  if ((data[at + 4]! & 0x0f) !== 0x1) throw invalidParameterField(at + 4, 3);
  if ((data[at + 5]! & 0x30) !== 0) throw invalidParameterField(at + 5, 5);
  if ((data[at + 5]! & 0x0f) !== 0x3) throw invalidParameterField(at + 5, 3);
  const length = data[at + 7]!;
  // The designator fits in bytes 8-27 of the 32-byte descriptor; NAA designators are 8 or 16 bytes.
  if (length !== 8 && length !== 16) throw invalidParameterField(at + 7);
  return {
    offset: at,
    designator: data.slice(at + 8, at + 8 + length),
    blockLength: be24(data, at + 29),
  };
};

/** SPC-4 6.4.6.5 block device to block device segment descriptor (0x02). */
const parseSegment = (data: Uint8Array, at: number, end: number, targets: number): BlockSegmentDescriptor => {
  if (data[at] !== 0x02) {
    throw new ScsiCheckCondition('UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE', {
      fieldPointer: { inCdb: false, byte: at },
    });
  }
  if (end - at < 4 || be16(data, at + 2) !== BLOCK_SEGMENT_DESCRIPTOR_LENGTH - 4)
    throw invalidParameterField(at + 2);
  if (end - at < BLOCK_SEGMENT_DESCRIPTOR_LENGTH) throw invalidParameterField(8); // list length cuts it short
  rejectReserved(data, at + 1, 0xfc);
  const source = be16(data, at + 4);
  const destination = be16(data, at + 6);
  if (source >= targets) throw invalidParameterField(at + 4);
  if (destination >= targets) throw invalidParameterField(at + 6);
  if (be16(data, at + 8) !== 0) throw invalidParameterField(at + 8);
  return {
    offset: at,
    destinationCount: (data[at + 1]! & 0x02) !== 0,
    cat: (data[at + 1]! & 0x01) !== 0,
    source,
    destination,
    blocks: be16(data, at + 10),
    sourceLba: be64(data, at + 12),
    destinationLba: be64(data, at + 20),
  };
};

/**
 * SPC-4 6.4 EXTENDED COPY (LID1) parameter list. Everything is validated
 * before the copy starts; `undefined` for a zero-length list (no copy, not an error).
 */
export const parseExtendedCopyParameters = (data: Uint8Array): ExtendedCopyParameters | undefined => {
  if (data.length === 0) return undefined;
  if (data.length < HEADER_LENGTH) throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  rejectReserved(data, 1, 0xc0);
  const usageBits = (data[1]! >> 3) & 0x03;
  if (usageBits === 0x01) throw invalidParameterField(1, 4);
  const listIdUsage: ListIdUsage = usageBits === 0 ? 'hold' : usageBits === 2 ? 'no-hold' : 'none';
  // LIST ID USAGE 11b: the list identifier is not used and shall be zero.
  if (listIdUsage === 'none' && data[0] !== 0) throw invalidParameterField(0);
  for (let i = 4; i < 8; i++) rejectReserved(data, i, 0xff);
  const targetListLength = be16(data, 2);
  const segmentListLength = be32(data, 8);
  const inlineLength = be32(data, 12);
  if (HEADER_LENGTH + targetListLength + segmentListLength + inlineLength > data.length) {
    throw new ScsiCheckCondition('PARAMETER_LIST_LENGTH_ERROR');
  }
  if (inlineLength !== 0) throw invalidParameterField(12); // no segment type here uses inline data
  if (targetListLength % TARGET_DESCRIPTOR_LENGTH !== 0) throw invalidParameterField(2);
  const targetCount = targetListLength / TARGET_DESCRIPTOR_LENGTH;
  if (targetCount > CopyLimits.maxTargetDescriptors) {
    throw new ScsiCheckCondition('TOO_MANY_TARGET_DESCRIPTORS', { fieldPointer: { inCdb: false, byte: 2 } });
  }
  const targets: CopyTargetDescriptor[] = [];
  for (let i = 0; i < targetCount; i++)
    targets.push(parseTarget(data, HEADER_LENGTH + i * TARGET_DESCRIPTOR_LENGTH));

  const segments: BlockSegmentDescriptor[] = [];
  const end = HEADER_LENGTH + targetListLength + segmentListLength;
  for (let at = HEADER_LENGTH + targetListLength; at < end; at += BLOCK_SEGMENT_DESCRIPTOR_LENGTH) {
    if (segments.length === CopyLimits.maxSegmentDescriptors) {
      throw new ScsiCheckCondition('TOO_MANY_SEGMENT_DESCRIPTORS', {
        fieldPointer: { inCdb: false, byte: 8 },
      });
    }
    segments.push(parseSegment(data, at, end, targetCount));
  }
  return {
    listIdentifier: data[0]!,
    listIdUsage,
    sequentialStriped: (data[1]! & 0x20) !== 0,
    priority: data[1]! & 0x07,
    targets,
    segments,
  };
};

export interface CopyTargetSpec {
  readonly designator: Uint8Array;
  readonly blockLength: number;
}

export interface BlockSegmentSpec {
  readonly source: number;
  readonly destination: number;
  readonly blocks: number;
  readonly sourceLba: number;
  readonly destinationLba: number;
  readonly destinationCount?: boolean;
}

/** Build an EXTENDED COPY (LID1) parameter list (initiators, tests). */
export const encodeExtendedCopyParameters = (list: {
  readonly listIdentifier?: number;
  readonly listIdUsage?: ListIdUsage;
  readonly priority?: number;
  readonly targets: readonly CopyTargetSpec[];
  readonly segments: readonly BlockSegmentSpec[];
}): Uint8Array => {
  const targetsLength = list.targets.length * TARGET_DESCRIPTOR_LENGTH;
  const segmentsLength = list.segments.length * BLOCK_SEGMENT_DESCRIPTOR_LENGTH;
  const out = new Uint8Array(HEADER_LENGTH + targetsLength + segmentsLength);
  out[0] = list.listIdentifier ?? 0;
  const usage = list.listIdUsage ?? 'no-hold';
  out[1] = ((usage === 'hold' ? 0 : usage === 'no-hold' ? 2 : 3) << 3) | ((list.priority ?? 0) & 7);
  putBe16(out, 2, targetsLength);
  putBe32(out, 8, segmentsLength);
  list.targets.forEach((t, i) => {
    const at = HEADER_LENGTH + i * TARGET_DESCRIPTOR_LENGTH;
    out[at] = 0xe4;
    out[at + 4] = 0x01; // binary
    out[at + 5] = 0x03; // LU association, NAA
    out[at + 7] = t.designator.length;
    out.set(t.designator, at + 8);
    putBe24(out, at + 29, t.blockLength);
  });
  list.segments.forEach((s, i) => {
    const at = HEADER_LENGTH + targetsLength + i * BLOCK_SEGMENT_DESCRIPTOR_LENGTH;
    out[at] = 0x02;
    out[at + 1] = s.destinationCount ? 0x02 : 0;
    putBe16(out, at + 2, BLOCK_SEGMENT_DESCRIPTOR_LENGTH - 4);
    putBe16(out, at + 4, s.source);
    putBe16(out, at + 6, s.destination);
    putBe16(out, at + 10, s.blocks);
    putBe64(out, at + 12, s.sourceLba);
    putBe64(out, at + 20, s.destinationLba);
  });
  return out;
};
