/**
 * go-tcmu's README example in this API: a 5 MiB volume of 1 KiB blocks, `myVolName` on HBA 30,
 * LUN 0, at /dev/myDevDirectory/myVolName, whose commands our own handler answers. go-tcmu's
 * SCSIHandler fields become openDevice options: HBA → hba, LUN → lun, WWN → identity (derived
 * from the name unless given), VolumeName → name, DataSizes → size and blockSize, DevReady's
 * ReadWriterAtCmdHandler → handler; OpenTCMUDevice(dir) → nodeDir; d.Close() → close().
 *
 * The handler answers READ(10) and READ(16) from a custom source (`ReaderAt`, after Go's
 * io.ReaderAt) and passes every other command to the built-in emulation, as go-tcmu's handler
 * falls back on its Emulate* functions. The source cannot be written, so the disk is read-only.
 *
 *   sudo node --import tsx examples/custom-handler.ts
 */
import { fileURLToPath } from 'node:url';
import {
  type Device,
  type Handler,
  handleSignals,
  type OpenDeviceOptions,
  openDevice,
  resolveIdentity,
  scsiHandler,
} from '@tcmu/device';
import { encodeSense, LogicalUnit, ScsiStatus, SenseReasons } from '@tcmu/scsi';

const READ_10 = 0x28;
const READ_16 = 0x88;

/** `length` bytes from byte `offset`, both whole blocks (Go's io.ReaderAt, possibly async). */
export interface ReaderAt {
  readAt(offset: number, length: number): Uint8Array | Promise<Uint8Array>;
}

/** The custom source here: each block reads as a line naming it, padded with spaces. */
export function labelledBlocks(blockSize: number): ReaderAt {
  const encoder = new TextEncoder();
  return {
    readAt(offset, length) {
      const bytes = new Uint8Array(length).fill(0x20);
      for (let at = 0; at < length; at += blockSize) {
        bytes.set(encoder.encode(`block ${(offset + at) / blockSize}\n`), at);
      }
      return bytes;
    },
  };
}

export interface Volume {
  readonly name: string;
  readonly blockSize: number;
  readonly blockCount: number;
}

/** READ(10)/READ(16) straight from `source`; anything else through the emulation. */
export function readerAtHandler(source: ReaderAt, volume: Volume): Handler {
  const { blockSize, blockCount } = volume;
  // The emulation sees the same source as a read-only backend (VERIFY and the like read it too)
  // and the identity the device gives the kernel, so VPD pages 80h/83h agree with configfs.
  const { serial, naa } = resolveIdentity(volume.name);
  const emulate = scsiHandler(
    new LogicalUnit({
      backend: {
        blockSize,
        blockCount,
        readOnly: true,
        async read(lba, into) {
          into.set(await source.readAt(lba * blockSize, into.length));
        },
        write() {
          throw new Error('read-only source');
        },
        flush() {},
      },
      config: { serial, naa },
      powerOnUnitAttention: false, // LIO reports POWER ON for TCMU devices itself
    }),
  );
  return async (cmd) => {
    if (cmd.opcode !== READ_10 && cmd.opcode !== READ_16) return emulate(cmd);
    // SBC-4 5.16 and 5.18: the LBA from byte 2, the TRANSFER LENGTH from byte 7 or 10.
    const cdb = new DataView(cmd.cdb.buffer, cmd.cdb.byteOffset, cmd.cdb.byteLength);
    const lba = cmd.opcode === READ_10 ? cdb.getUint32(2) : Number(cdb.getBigUint64(2));
    const blocks = cmd.opcode === READ_10 ? cdb.getUint16(7) : cdb.getUint32(10);
    if (lba >= blockCount || lba + blocks > blockCount) {
      return { status: ScsiStatus.CHECK_CONDITION, sense: encodeSense(SenseReasons.LBA_OUT_OF_RANGE) };
    }
    return { status: ScsiStatus.GOOD, dataIn: await source.readAt(lba * blockSize, blocks * blockSize) };
  };
}

/** Opens the volume. Tests pass `platform` (a simulated kernel) and a node directory of theirs. */
export function openCustomVolume(
  options: Pick<OpenDeviceOptions, 'platform' | 'nodeDir' | 'nodeKind'> = {},
): Promise<Device> {
  const volume: Volume = { name: 'myVolName', blockSize: 1024, blockCount: 5 * 1024 };
  return openDevice({
    name: volume.name,
    hba: 30,
    lun: 0,
    size: volume.blockSize * volume.blockCount,
    blockSize: volume.blockSize,
    handler: readerAtHandler(labelledBlocks(volume.blockSize), volume),
    nodeDir: '/dev/myDevDirectory',
    ...options,
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const device = await openCustomVolume();
  console.log(`serving ${device.nodePath} (${device.diskPath}); Ctrl-C removes it`);
  handleSignals([device]);
}
