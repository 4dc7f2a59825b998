/** The fuzz jobs' seeded randomness and CDB generator, shared by run.ts and kernel.ts. */
import { type AnyOpcodeEntry, defaultOpcodeTable } from '@tcmu/scsi';

/** xorshift32: the same seed gives the same run. */
export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0 || 1;
  }
  next(): number {
    let s = this.#state;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.#state = s >>> 0;
    return this.#state;
  }
  below(n: number): number {
    return this.next() % n;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.next() & 0xff);
  }
}

export const OPCODE_ENTRIES: readonly AnyOpcodeEntry[] = defaultOpcodeTable().entries();
const OPCODES = [...new Set(OPCODE_ENTRIES.map((e) => e.opcode))];

export interface RandomCdb {
  readonly cdb: Uint8Array;
  /** The table entry it was built from; undefined for raw bytes. */
  readonly entry?: AnyOpcodeEntry;
}

/**
 * A CDB: random bytes (1 in 3; `maxLength` bounds them), or an implemented command's CDB
 * of its own length with zeros (1 in 3) or with small random LBA and length bytes (1 in 3),
 * so valid commands run too.
 */
export function randomCdb(random: Random, maxLength = 260): RandomCdb {
  const mode = random.below(3);
  if (mode === 0) {
    const length =
      random.below(4) === 0 ? 1 + random.below(maxLength) : [6, 10, 12, 16, 32][random.below(5)]!;
    const cdb = random.bytes(Math.min(length, maxLength));
    if (random.below(2) === 0) cdb[0] = OPCODES[random.below(OPCODES.length)]!;
    return { cdb };
  }
  const entry = OPCODE_ENTRIES[random.below(OPCODE_ENTRIES.length)]!;
  const cdb = new Uint8Array(entry.cdbLength);
  cdb[0] = entry.opcode;
  if (entry.serviceAction !== undefined) {
    if (entry.opcode === 0x7f && cdb.length >= 10) {
      cdb[7] = cdb.length - 8;
      cdb[8] = entry.serviceAction >> 8;
      cdb[9] = entry.serviceAction & 0xff;
    } else if (cdb.length > 1) cdb[1] = entry.serviceAction & 0x1f;
  }
  if (mode === 2) {
    for (let i = 2; i < Math.min(cdb.length - 1, 14); i++) {
      if (random.below(3) === 0) cdb[i] = random.below(4) === 0 ? random.next() & 0xff : random.below(8);
    }
  }
  return { cdb, entry };
}
