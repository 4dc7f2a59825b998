import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScsiCheckCondition } from '../core/errors.js';
import { builtinEntries } from './index.js';

/**
 * Every built-in command's codec: decode(encode(decode(cdb))) equals
 * decode(cdb) for any CDB the decoder accepts, and encode writes the opcode,
 * the service action and the CDB length. 64-bit values above 2^53 decode
 * as Infinity (rejected by every range check), so they are not re-encoded.
 */
describe('CDB codec round trip for every command', () => {
  for (const entry of builtinEntries()) {
    it(`${entry.name}`, () => {
      expect(entry.encode, `${entry.name} has no encode`).toBeTypeOf('function');
      fc.assert(
        fc.property(fc.uint8Array({ minLength: entry.cdbLength, maxLength: entry.cdbLength }), (random) => {
          const cdb = random.slice();
          cdb[0] = entry.opcode;
          if (entry.opcode === 0x7f) {
            cdb[7] = entry.cdbLength - 8;
            cdb[8] = entry.serviceAction! >> 8;
            cdb[9] = entry.serviceAction! & 0xff;
          } else if (entry.serviceAction !== undefined) {
            cdb[1] = (cdb[1]! & 0xe0) | entry.serviceAction;
          }
          // Only the fields the command uses (reserved bits would be rejected first).
          for (let i = 1; i < cdb.length; i++)
            cdb[i]! &= entry.usage[i]! | (entry.opcode === 0x7f && i >= 7 && i <= 9 ? 0xff : 0);
          if (entry.serviceAction !== undefined && entry.opcode !== 0x7f)
            cdb[1] = (cdb[1]! & ~0x1f) | entry.serviceAction;
          let fields: unknown;
          try {
            fields = entry.decode(cdb);
          } catch (error) {
            expect(error).toBeInstanceOf(ScsiCheckCondition);
            return;
          }
          // 64-bit fields above 2^53 decode as Infinity by design (always out of range): not re-encodable.
          if (Object.values(fields as object).includes(Number.POSITIVE_INFINITY)) return;
          const encoded = entry.encode!(fields);
          expect(encoded.length).toBe(entry.cdbLength);
          expect(encoded[0]).toBe(entry.opcode);
          expect(entry.decode(encoded)).toEqual(fields);
        }),
        { numRuns: 200 },
      );
    });
  }
});
