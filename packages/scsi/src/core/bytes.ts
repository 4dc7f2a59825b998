/** Big-endian field access for CDBs and parameter data (SCSI is big-endian). */

export const be16 = (b: Uint8Array, o: number): number => ((b[o]! << 8) | b[o + 1]!) >>> 0;
export const be24 = (b: Uint8Array, o: number): number =>
  ((b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!) >>> 0;
export const be32 = (b: Uint8Array, o: number): number =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

/**
 * A 64-bit field as a number. Values above Number.MAX_SAFE_INTEGER come back
 * as Infinity, which every range check then rejects (no block device here has
 * 2^53 blocks), so callers never see a silently rounded LBA.
 */
export const be64 = (b: Uint8Array, o: number): number => {
  const hi = be32(b, o);
  if (hi > 0x1fffff) return Number.POSITIVE_INFINITY;
  return hi * 0x1_0000_0000 + be32(b, o + 4);
};

export const putBe16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
};
export const putBe24 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = (v >>> 16) & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = v & 0xff;
};
export const putBe32 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
};
export const putBe64 = (b: Uint8Array, o: number, v: number | bigint): void => {
  const n = BigInt(v);
  putBe32(b, o, Number((n >> 32n) & 0xffff_ffffn));
  putBe32(b, o + 4, Number(n & 0xffff_ffffn));
};

/** ASCII field, space padded (or truncated) to `length`: SPC-5 4.3.1 left-aligned ASCII. */
export const putAscii = (b: Uint8Array, o: number, length: number, text: string): void => {
  for (let i = 0; i < length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x20;
    b[o + i] = c >= 0x20 && c < 0x7f ? c : 0x20;
  }
};
