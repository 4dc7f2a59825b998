import { describe, expect, it } from 'vitest';
import { ascText, describedAscCodes, senseKeyText } from './asc-text.js';
import { SenseKey, SenseReasons } from './reasons.js';
import {
  SenseDecodeError,
  decodeSense,
  encodeSense,
  needsDescriptorFormat,
  progressOf,
  senseFor,
} from './sense.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('fixed format sense (SPC-5 4.4.3)', () => {
  it('INVALID COMMAND OPERATION CODE: 70h, key 5, additional length 10, ASC 20 00', () => {
    const b = encodeSense(SenseReasons.INVALID_COMMAND_OPERATION_CODE);
    expect(hex(b)).toBe('700005000000000a00000000200000000000');
  });

  it('INFORMATION sets VALID and bytes 3-6', () => {
    const b = encodeSense({ ...SenseReasons.UNRECOVERED_READ_ERROR, information: 0x01020304 });
    expect(b[0]).toBe(0xf0);
    expect([...b.subarray(3, 7)]).toEqual([1, 2, 3, 4]);
    expect(decodeSense(b)).toMatchObject({
      format: 'fixed',
      key: 3,
      asc: 0x11,
      ascq: 0,
      information: 0x01020304,
    });
  });

  it('an INFORMATION value wider than 32 bits is not VALID in fixed format', () => {
    const b = encodeSense({ ...SenseReasons.WRITE_ERROR, information: 2 ** 40 }, 'fixed');
    expect(b[0]).toBe(0x70);
    expect(decodeSense(b).information).toBeUndefined();
  });

  it('field pointer: SKSV, C/D, BPV and bit pointer (SPC-5 4.4.2.4.2)', () => {
    const b = encodeSense({
      ...SenseReasons.INVALID_FIELD_IN_CDB,
      fieldPointer: { inCdb: true, byte: 1, bit: 7 },
    });
    expect([...b.subarray(15, 18)]).toEqual([0x80 | 0x40 | 0x08 | 7, 0, 1]);
    expect(decodeSense(b).fieldPointer).toEqual({ inCdb: true, byte: 1, bit: 7 });
  });

  it('field pointer into the parameter list without a bit: C/D=0, BPV=0', () => {
    const b = encodeSense({
      ...SenseReasons.INVALID_FIELD_IN_PARAMETER_LIST,
      fieldPointer: { inCdb: false, byte: 0x1234 },
    });
    expect([...b.subarray(15, 18)]).toEqual([0x80, 0x12, 0x34]);
    expect(decodeSense(b).fieldPointer).toEqual({ inCdb: false, byte: 0x1234 });
  });

  it('progress indication (SPC-5 4.4.2.4.4), clamped to 16 bits', () => {
    const b = encodeSense({ ...SenseReasons.NOT_READY_FORMAT_IN_PROGRESS, progress: 0x8000 });
    expect([...b.subarray(15, 18)]).toEqual([0x80, 0x80, 0x00]);
    expect(decodeSense(b).progress).toBe(0x8000);
    const over = encodeSense({ ...SenseReasons.NOT_READY_FORMAT_IN_PROGRESS, progress: 1e9 });
    expect(decodeSense(over).progress).toBe(0xffff);
  });

  it('deferred errors use 71h', () => {
    const b = encodeSense({ ...SenseReasons.WRITE_ERROR, deferred: true });
    expect(b[0]).toBe(0x71);
    expect(decodeSense(b).deferred).toBe(true);
  });

  it('command-specific information in bytes 8-11', () => {
    const b = encodeSense({ ...SenseReasons.COPY_TARGET_DEVICE_NOT_REACHABLE, commandSpecific: 0xabcdef });
    expect(decodeSense(b).commandSpecific).toBe(0xabcdef);
  });
});

describe('descriptor format sense (SPC-5 4.4.2)', () => {
  it('no descriptors: 8 bytes, 72h, key/ASC/ASCQ in bytes 1-3', () => {
    const b = encodeSense(SenseReasons.LBA_OUT_OF_RANGE, 'descriptor');
    expect(hex(b)).toBe('7205210000000000');
    expect(decodeSense(b)).toEqual({ format: 'descriptor', key: 5, asc: 0x21, ascq: 0 });
  });

  it('64-bit INFORMATION descriptor (type 00h, VALID)', () => {
    const b = encodeSense(
      { ...SenseReasons.UNRECOVERED_READ_ERROR, information: 0x1_0000_0001 },
      'descriptor',
    );
    expect(b[7]).toBe(12);
    expect([...b.subarray(8, 12)]).toEqual([0x00, 0x0a, 0x80, 0x00]);
    expect(decodeSense(b).information).toBe(0x1_0000_0001);
  });

  it('INFORMATION beyond 2^53 decodes as a bigint', () => {
    const big = 0xffff_ffff_ffff_fff0n;
    const b = encodeSense(
      { ...SenseReasons.MISCOMPARE_DURING_VERIFY_OPERATION, information: big },
      'descriptor',
    );
    expect(decodeSense(b).information).toBe(big);
  });

  it('sense key specific descriptor (type 02h) with a field pointer; deferred 73h', () => {
    const b = encodeSense(
      { ...SenseReasons.INVALID_FIELD_IN_CDB, deferred: true, fieldPointer: { inCdb: true, byte: 2 } },
      'descriptor',
    );
    expect(b[0]).toBe(0x73);
    expect([...b.subarray(8, 16)]).toEqual([0x02, 0x06, 0, 0, 0xc0, 0, 2, 0]);
    expect(decodeSense(b)).toMatchObject({ deferred: true, fieldPointer: { inCdb: true, byte: 2 } });
  });

  it('information, command-specific and progress together round-trip', () => {
    const data = {
      ...SenseReasons.NOT_READY_FORMAT_IN_PROGRESS,
      information: 5,
      commandSpecific: 6,
      progress: 7,
    };
    expect(decodeSense(encodeSense(data, 'descriptor'))).toEqual({ format: 'descriptor', ...data });
  });

  it('skips unknown descriptor types and rejects overrunning ones', () => {
    const b = Uint8Array.from([0x72, 5, 0x24, 0, 0, 0, 0, 6, 0x80, 4, 1, 2, 3, 4]);
    expect(decodeSense(b)).toEqual({ format: 'descriptor', key: 5, asc: 0x24, ascq: 0 });
    const bad = Uint8Array.from([0x72, 5, 0x24, 0, 0, 0, 0, 4, 0x00, 10, 0, 0]);
    expect(() => decodeSense(bad)).toThrow(SenseDecodeError);
  });
});

describe('format selection and decoding errors', () => {
  it('descriptor format when D_SENSE is set or INFORMATION needs 64 bits', () => {
    const base = SenseReasons.UNRECOVERED_READ_ERROR;
    expect(needsDescriptorFormat(base, false)).toBe(false);
    expect(needsDescriptorFormat(base, true)).toBe(true);
    expect(needsDescriptorFormat({ ...base, information: 0xffff_ffff }, false)).toBe(false);
    expect(needsDescriptorFormat({ ...base, information: 0x1_0000_0000 }, false)).toBe(true);
    expect(needsDescriptorFormat({ ...base, commandSpecific: 2n ** 33n }, false)).toBe(true);
    expect(senseFor(base, { information: 2 ** 33 }, false)[0]).toBe(0x72);
    expect(senseFor(base, { information: 2 }, false)[0]).toBe(0xf0);
  });

  it('rejects empty, short and unknown sense buffers with SenseDecodeError', () => {
    expect(() => decodeSense(new Uint8Array(0))).toThrow(SenseDecodeError);
    expect(() => decodeSense(Uint8Array.from([0x70, 0, 5]))).toThrow(/14 bytes/);
    expect(() => decodeSense(Uint8Array.from([0x72, 5]))).toThrow(/8 bytes/);
    expect(() => decodeSense(Uint8Array.from([0x7e, 0, 0, 0, 0, 0, 0, 0]))).toThrow(/0x7e/);
  });

  it('a 14-byte fixed buffer (no sense-key-specific bytes) decodes', () => {
    const b = encodeSense(SenseReasons.WRITE_PROTECTED).subarray(0, 14);
    expect(decodeSense(b)).toMatchObject({ key: SenseKey.DATA_PROTECT, asc: 0x27 });
  });

  it('sense-key-specific bytes of other keys are not misread', () => {
    const b = encodeSense({ ...SenseReasons.WRITE_ERROR, progress: 9 });
    expect(decodeSense(b).progress).toBeUndefined();
  });

  it('progressOf maps a fraction to 0..65535', () => {
    expect(progressOf(0, 10)).toBe(0);
    expect(progressOf(5, 10)).toBe(0x8000);
    expect(progressOf(10, 10)).toBe(0xffff);
    expect(progressOf(1, 0)).toBe(0);
  });
});

describe('ASC/ASCQ text', () => {
  it('describes the codes of every sense reason the library produces', () => {
    for (const [name, r] of Object.entries(SenseReasons)) {
      expect(ascText(r.asc, r.ascq), name).not.toMatch(/^ASC /);
    }
  });

  it('has about a hundred common codes and names unknown ones', () => {
    expect(describedAscCodes().length).toBeGreaterThanOrEqual(100);
    expect(ascText(0x21, 0x00)).toBe('LOGICAL BLOCK ADDRESS OUT OF RANGE');
    expect(ascText(0x7d, 0x01)).toBe('ASC 7Dh ASCQ 01h');
    expect(ascText(0x80, 0x01)).toBe('VENDOR SPECIFIC ASC/ASCQ 80/01');
  });

  it('names sense keys', () => {
    expect(senseKeyText(5)).toBe('ILLEGAL REQUEST');
    expect(senseKeyText(0xe)).toBe('MISCOMPARE');
    expect(senseKeyText(0xc)).toBe('EQUAL');
  });
});
