import { be32, be64, putBe32, putBe64 } from '../core/bytes.js';
import type { FieldPointer } from '../core/errors.js';
import type { SenseKeyCode, SenseReason } from './reasons.js';
import { ScsiError } from '../core/scsi-error.js';

/** Decoded (or to-be-encoded) sense data, format independent. */
export interface SenseData {
  readonly key: SenseKeyCode | number;
  readonly asc: number;
  readonly ascq: number;
  /** Deferred error (0x71/0x73) rather than current (0x70/0x72). */
  readonly deferred?: boolean;
  /** INFORMATION field; VALID set when present. */
  readonly information?: number | bigint;
  /** COMMAND-SPECIFIC INFORMATION (fixed format bytes 8-11; descriptor type 0x01). */
  readonly commandSpecific?: number | bigint;
  /** Sense-key-specific field pointer (ILLEGAL REQUEST). */
  readonly fieldPointer?: FieldPointer;
  /** Sense-key-specific progress indication 0..65535 (NOT READY, NO SENSE). */
  readonly progress?: number;
}

export type SenseFormat = 'fixed' | 'descriptor';

export interface DecodedSense extends SenseData {
  readonly format: SenseFormat;
}

/** Sense buffers never exceed this (SPC-5 4.4.1; the kernel's TCMU_SENSE_BUFFERSIZE). */
export const MAX_SENSE_LENGTH = 96;
const FIXED_LENGTH = 18;
const U32_MAX = 0xffff_ffff;

/** Typed error for sense bytes that cannot be decoded. */
export class SenseDecodeError extends ScsiError {
  static override readonly brand: string = '@tcmu/scsi.SenseDecodeError';
  override readonly name = 'SenseDecodeError';
}

const fitsIn32 = (v: number | bigint): boolean => (typeof v === 'bigint' ? v <= 0xffff_ffffn : v <= U32_MAX);

/**
 * Descriptor format is needed when the control mode page's D_SENSE is set or
 * an INFORMATION value does not fit the fixed format's 32 bits (SPC-5 4.4.1).
 */
export const needsDescriptorFormat = (data: SenseData, descriptorSense: boolean): boolean =>
  descriptorSense ||
  (data.information !== undefined && !fitsIn32(data.information)) ||
  (data.commandSpecific !== undefined && !fitsIn32(data.commandSpecific));

/** The three sense-key-specific bytes (SPC-5 4.4.2.4), or undefined when none. */
const senseKeySpecific = (data: SenseData): [number, number, number] | undefined => {
  const fp = data.fieldPointer;
  if (fp) {
    let b0 = 0x80 | (fp.inCdb ? 0x40 : 0);
    if (fp.bit !== undefined) b0 |= 0x08 | (fp.bit & 0x07);
    return [b0, (fp.byte >>> 8) & 0xff, fp.byte & 0xff];
  }
  if (data.progress !== undefined) {
    const p = Math.max(0, Math.min(0xffff, Math.trunc(data.progress)));
    return [0x80, p >>> 8, p & 0xff];
  }
  return undefined;
};

/** Encode sense data in fixed (0x70/0x71) or descriptor (0x72/0x73) format. */
export function encodeSense(data: SenseData, format: SenseFormat = 'fixed'): Uint8Array {
  const sks = senseKeySpecific(data);
  if (format === 'fixed') {
    const b = new Uint8Array(FIXED_LENGTH);
    b[0] = data.deferred ? 0x71 : 0x70;
    b[2] = data.key & 0x0f;
    if (data.information !== undefined) {
      // A value wider than 32 bits cannot be VALID in fixed format.
      if (fitsIn32(data.information)) {
        b[0] |= 0x80;
        putBe32(b, 3, Number(data.information));
      }
    }
    b[7] = FIXED_LENGTH - 8;
    if (data.commandSpecific !== undefined && fitsIn32(data.commandSpecific)) {
      putBe32(b, 8, Number(data.commandSpecific));
    }
    b[12] = data.asc;
    b[13] = data.ascq;
    if (sks) b.set(sks, 15);
    return b;
  }
  let length = 8;
  if (data.information !== undefined) length += 12;
  if (data.commandSpecific !== undefined) length += 12;
  if (sks) length += 8;
  const b = new Uint8Array(length);
  b[0] = data.deferred ? 0x73 : 0x72;
  b[1] = data.key & 0x0f;
  b[2] = data.asc;
  b[3] = data.ascq;
  b[7] = length - 8;
  let o = 8;
  if (data.information !== undefined) {
    // SPC-5 4.4.2.2 Information sense data descriptor.
    b[o] = 0x00;
    b[o + 1] = 0x0a;
    b[o + 2] = 0x80;
    putBe64(b, o + 4, data.information);
    o += 12;
  }
  if (data.commandSpecific !== undefined) {
    b[o] = 0x01;
    b[o + 1] = 0x0a;
    putBe64(b, o + 4, data.commandSpecific);
    o += 12;
  }
  if (sks) {
    // SPC-5 4.4.2.4 Sense key specific sense data descriptor.
    b[o] = 0x02;
    b[o + 1] = 0x06;
    b.set(sks, o + 4);
  }
  return b;
}

/** Encode a sense reason with details, choosing the format per SPC-5 4.4.1. */
export function senseFor(
  reason: SenseReason,
  details: Omit<SenseData, 'key' | 'asc' | 'ascq'>,
  descriptorSense: boolean,
): Uint8Array {
  const data: SenseData = { key: reason.key, asc: reason.asc, ascq: reason.ascq, ...details };
  return encodeSense(data, needsDescriptorFormat(data, descriptorSense) ? 'descriptor' : 'fixed');
}

const decodeSks = (b0: number, b1: number, b2: number, key: number) => {
  if (!(b0 & 0x80)) return {};
  // ILLEGAL REQUEST carries a field pointer; NOT READY / NO SENSE a progress indication.
  if (key === 0x05) {
    const pointer: FieldPointer =
      b0 & 0x08
        ? { inCdb: (b0 & 0x40) !== 0, byte: (b1 << 8) | b2, bit: b0 & 0x07 }
        : { inCdb: (b0 & 0x40) !== 0, byte: (b1 << 8) | b2 };
    return { fieldPointer: pointer };
  }
  if (key === 0x00 || key === 0x02) return { progress: (b1 << 8) | b2 };
  return {};
};

const wide = (b: Uint8Array, o: number): number | bigint => {
  const n = be64(b, o);
  if (Number.isFinite(n)) return n;
  return (BigInt(be32(b, o)) << 32n) | BigInt(be32(b, o + 4));
};

/** Decode fixed or descriptor sense data; throws SenseDecodeError on malformed bytes. */
export function decodeSense(bytes: Uint8Array): DecodedSense {
  if (bytes.length < 1) throw new SenseDecodeError('empty sense buffer');
  const code = bytes[0]! & 0x7f;
  if (code === 0x70 || code === 0x71) {
    if (bytes.length < 14) throw new SenseDecodeError(`fixed sense data needs 14 bytes, got ${bytes.length}`);
    const key = bytes[2]! & 0x0f;
    const out: {
      -readonly [K in keyof DecodedSense]: DecodedSense[K];
    } = { format: 'fixed', key, asc: bytes[12]!, ascq: bytes[13]! };
    if (code === 0x71) out.deferred = true;
    if (bytes[0]! & 0x80) out.information = be32(bytes, 3);
    const csi = be32(bytes, 8);
    if (csi !== 0) out.commandSpecific = csi;
    if (bytes.length >= 18) Object.assign(out, decodeSks(bytes[15]!, bytes[16]!, bytes[17]!, key));
    return out;
  }
  if (code === 0x72 || code === 0x73) {
    if (bytes.length < 8)
      throw new SenseDecodeError(`descriptor sense data needs 8 bytes, got ${bytes.length}`);
    const key = bytes[1]! & 0x0f;
    const out: {
      -readonly [K in keyof DecodedSense]: DecodedSense[K];
    } = { format: 'descriptor', key, asc: bytes[2]!, ascq: bytes[3]! };
    if (code === 0x73) out.deferred = true;
    const end = Math.min(bytes.length, 8 + bytes[7]!);
    let o = 8;
    while (o + 2 <= end) {
      const type = bytes[o]!;
      const len = bytes[o + 1]!;
      if (o + 2 + len > end) throw new SenseDecodeError(`sense descriptor at byte ${o} overruns the buffer`);
      if (type === 0x00 && len >= 0x0a) {
        if (bytes[o + 2]! & 0x80) out.information = wide(bytes, o + 4);
      } else if (type === 0x01 && len >= 0x0a) {
        out.commandSpecific = wide(bytes, o + 4);
      } else if (type === 0x02 && len >= 0x06) {
        Object.assign(out, decodeSks(bytes[o + 4]!, bytes[o + 5]!, bytes[o + 6]!, key));
      }
      o += 2 + len;
    }
    return out;
  }
  throw new SenseDecodeError(`unknown sense response code 0x${code.toString(16)}`);
}

/** Progress indication helper for callers that compute fractions. */
export const progressOf = (done: number, total: number): number =>
  total <= 0 ? 0 : Math.min(0xffff, Math.floor((done / total) * 0x10000));
