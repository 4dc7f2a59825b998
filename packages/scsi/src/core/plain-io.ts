import type { LogicalUnitState } from './command.js';
import { readWriteCommands } from '../sbc/read-write.js';
import type { OpcodeTable } from '../opcodes/table.js';

/**
 * What a transport's own fast path for plain READ and WRITE (the TCMU ring's
 * native lane) must check so that it answers exactly what the emulation
 * answers. It may answer only GOOD, and only when every condition holds;
 * everything else goes to `unit.execute()`, which answers with the precise
 * sense. While `unit.plainIo(nexus)` is closed it must not answer at all.
 */
export interface PlainIoProfile {
  readonly blockSize: number;
  /** LBA + TRANSFER LENGTH must not exceed it (SBC-4 4.5). */
  readonly blockCount: number;
  /** TRANSFER LENGTH above it is refused by the emulation (Block Limits VPD); 0: no limit. */
  readonly maxTransferBlocks: number;
  /**
   * The READ/WRITE 6/10/12/16 opcodes the unit serves with the built-in
   * commands, each with the CDB bits that must all be zero: the bits outside
   * the usage mask (INVALID FIELD IN CDB), NACA, RDPROTECT/WRPROTECT (no
   * protection information) and FUA (durable before GOOD). Byte 0 is 0. A
   * transfer length of 0 and a Data buffer that is not exactly the transfer
   * are left to the emulation too.
   */
  readonly opcodes: ReadonlyMap<number, Uint8Array>;
}

const FAST_OPCODES = [0x08, 0x0a, 0x28, 0x2a, 0xa8, 0xaa, 0x88, 0x8a] as const;
/** byte 1 of READ/WRITE 10/12/16: RDPROTECT/WRPROTECT (7:5) and FUA (3) */
const PROTECT_AND_FUA = 0xe8;
const NACA = 0x04;

const builtIn = new Map(
  readWriteCommands.filter((e) => e.serviceAction === undefined).map((e) => [e.opcode, e]),
);

/** The profile of `unit` now (its table may have overridden a READ or WRITE: then that opcode is absent). */
export function plainIoProfile(unit: LogicalUnitState & { readonly table: OpcodeTable }): PlainIoProfile {
  const opcodes = new Map<number, Uint8Array>();
  for (const opcode of FAST_OPCODES) {
    const slot = unit.table.slot(opcode);
    if (slot === undefined || slot.entry !== builtIn.get(opcode)) continue;
    if (slot.entry.supported !== undefined && !slot.entry.supported(unit)) continue;
    const mask = slot.reserved.slice();
    mask[0] = 0;
    if (slot.entry.cdbLength > 6) mask[1]! |= PROTECT_AND_FUA;
    mask[slot.controlIndex]! |= NACA;
    opcodes.set(opcode, mask);
  }
  return {
    blockSize: unit.backend.blockSize,
    blockCount: unit.backend.blockCount,
    maxTransferBlocks: unit.config.maxTransferBlocks,
    opcodes,
  };
}
