import {
  type AnyOpcodeEntry,
  BackendIoError,
  type CommandContext,
  defaultOpcodeTable,
  type LogicalUnit,
  type OpcodeEntry,
  ScsiCheckCondition,
  writeFailureReason,
} from '@tcmu/scsi';
import type { RbdBackend } from './backend.js';
import { RbdNativeError } from './errors.js';

/** The fields of @tcmu/scsi's COMPARE AND WRITE decoder this handler reads. */
interface CompareAndWriteFields {
  readonly lba: number;
  readonly blocks: number;
  readonly fua: boolean;
}

const COMPARE_AND_WRITE = 0x89;

/** librbd refused the request itself (Pacific: more than one 512-byte sector) rather than failing it. */
const refusedByLibrbd = (error: unknown): boolean =>
  BackendIoError.isInstance(error) && RbdNativeError.isInstance(error.cause) && error.cause.code === 'EINVAL';

/**
 * COMPARE AND WRITE (SBC-4 5.3) answered by rbd_aio_compare_and_write: compare and write are
 * one operation on the OSD, atomic against every client of the image and not only against
 * this unit's commands, and the MISCOMPARE sense carries librbd's offset of the first
 * differing byte. The CDB codec and the checks are @tcmu/scsi's built-in entry's; what is not
 * a plain request (zero or too many blocks, out of range, short Data-Out, another backend),
 * what is longer than librbd takes (compareAndWriteMaxBytes) and what librbd refuses (EINVAL)
 * is answered by the built-in read, compare and write: atomic within this unit only.
 */
export function rbdCompareAndWrite(backend: RbdBackend): AnyOpcodeEntry {
  const builtin = defaultOpcodeTable().get(COMPARE_AND_WRITE) as OpcodeEntry<CompareAndWriteFields>;
  const handler = async (ctx: CommandContext<CompareAndWriteFields>): Promise<undefined> => {
    const { unit, fields, signal } = ctx;
    const bytes = fields.blocks * backend.blockSize;
    const plain =
      unit.backend === backend &&
      fields.blocks > 0 &&
      fields.blocks <= unit.config.maxCompareAndWriteBlocks &&
      fields.lba + fields.blocks <= backend.blockCount &&
      ctx.dataOut.length >= 2 * bytes &&
      bytes <= backend.compareAndWriteMaxBytes;
    if (!plain) return builtin.handler(ctx) as Promise<undefined>;
    const release = await unit.locks.lock(fields.lba, fields.blocks, 'exclusive');
    let offset: number;
    try {
      if (signal?.aborted) throw signal.reason;
      const fua = fields.fua || !unit.modes.writeCacheEnabled;
      const compare = ctx.dataOut.subarray(0, bytes);
      offset = await backend.compareAndWrite(fields.lba, compare, ctx.dataOut.subarray(bytes, 2 * bytes), {
        fua,
      });
    } catch (error) {
      if (!refusedByLibrbd(error)) {
        if (signal?.aborted) throw error;
        throw new ScsiCheckCondition(writeFailureReason(error), { information: fields.lba, cause: error });
      }
      offset = Number.NaN;
    } finally {
      release();
    }
    if (Number.isNaN(offset)) return builtin.handler(ctx) as Promise<undefined>;
    // INFORMATION = offset in bytes of the first miscompare within the verify data.
    if (offset >= 0)
      throw new ScsiCheckCondition('MISCOMPARE_DURING_VERIFY_OPERATION', { information: offset });
    return undefined;
  };
  return { ...builtin, handler };
}

/**
 * Serve `backend` well from `unit` (a LogicalUnit over it, e.g. `device.unit`): COMPARE AND
 * WRITE through librbd (rbdCompareAndWrite), and CAPACITY DATA HAS CHANGED to every I_T nexus
 * when the image is resized. Returns what stops the latter.
 */
export function installRbdCommands(unit: LogicalUnit, backend: RbdBackend): () => void {
  unit.override(rbdCompareAndWrite(backend));
  return backend.onResize(() => unit.capacityChanged());
}
