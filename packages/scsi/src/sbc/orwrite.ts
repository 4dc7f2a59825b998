import type { CommandContext, OpcodeEntry } from '../core/command.js';
import { writeBlocks } from '../core/io.js';
import { readModifyWrite } from './medium-access.js';
import { type ReadWriteFields, layout16, readWriteCodec, writeDataOutLength } from './read-write.js';

/** ORWRITE(16), SBC-4: WRITE(16)'s CDB, ORPROTECT in WRPROTECT's place (it must be 0: no protection information). */
export type OrWriteFields = ReadWriteFields;

export const ORWRITE_16 = 0x8b;

/**
 * SBC-4 ORWRITE(16): read the blocks, OR the Data-Out into them and write the result, as
 * one uninterrupted series, so no other command sees or changes the range in between.
 */
const orWrite = (ctx: CommandContext<OrWriteFields>): Promise<undefined> =>
  readModifyWrite(ctx, async (current) => {
    const data = ctx.dataOut;
    for (let i = 0; i < current.length; i++) current[i]! |= data[i]!;
    await writeBlocks(ctx.unit, ctx.fields.lba, current, ctx.fields.fua, ctx.signal);
  });

export const orWriteEntry: OpcodeEntry<OrWriteFields> = {
  opcode: ORWRITE_16,
  name: 'ORWRITE(16)',
  ...readWriteCodec(ORWRITE_16, layout16),
  direction: 'out',
  dataOutLength: writeDataOutLength(layout16),
  handler: orWrite,
  writes: true,
  mediumAccess: true,
  timeouts: { nominal: 10, recommended: 30 },
};
