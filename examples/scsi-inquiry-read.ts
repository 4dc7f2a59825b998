/**
 * @tcmu/scsi alone, no kernel: a logical unit over a MemoryBackend answers INQUIRY and
 * READ(10) as a disk would, and this prints what the bytes say.
 *
 *   node --import tsx examples/scsi-inquiry-read.ts
 */
import { ascText, decodeSense, LogicalUnit, MemoryBackend, ScsiStatus, senseKeyText } from '@tcmu/scsi';

const BLOCK = 512;
const unit = new LogicalUnit({
  backend: new MemoryBackend({ blockSize: BLOCK, blockCount: 2048 }), // 1 MiB, allocated as written
  config: { vendor: 'ACME', product: 'Example disk', revision: '0042' },
  // A real initiator would first see (and clear) POWER ON OCCURRED; this one does not care.
  powerOnUnitAttention: false,
});
const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1').trimEnd();
const status = (code: number) =>
  Object.keys(ScsiStatus).find((k) => ScsiStatus[k as keyof typeof ScsiStatus] === code);

// INQUIRY (12h), standard data: allocation length 96 in byte 4.
const inquiry = await unit.execute({ cdb: Uint8Array.of(0x12, 0, 0, 0, 96, 0), dataInLength: 96 });
const std = inquiry.dataIn!;
console.log(`INQUIRY: ${status(inquiry.status)}, ${std.length} bytes`);
console.log(`  peripheral device type ${std[0]! & 0x1f} (0 = direct-access block device)`);
console.log(`  version ${std[2]} (6 = SPC-4), removable ${(std[1]! & 0x80) !== 0}`);
console.log(
  `  vendor "${text(std.subarray(8, 16))}", product "${text(std.subarray(16, 32))}", revision "${text(std.subarray(32, 36))}"`,
);

// Something to read: WRITE(10) of one block at LBA 5.
const block = new Uint8Array(BLOCK);
block.set(new TextEncoder().encode('hello from LBA 5'));
await unit.execute({ cdb: Uint8Array.of(0x2a, 0, 0, 0, 0, 5, 0, 0, 1, 0), dataOut: block });

// READ(10): LBA in bytes 2-5, transfer length (blocks) in bytes 7-8.
const cdb = Uint8Array.of(0x28, 0, 0, 0, 0, 5, 0, 0, 1, 0);
const read = await unit.execute({ cdb, dataInLength: BLOCK });
console.log(
  `READ(10) LBA ${new DataView(cdb.buffer).getUint32(2)}, 1 block: ${status(read.status)}, "${text(read.dataIn!.subarray(0, 16))}"`,
);

// Past the end (LBA 2048 of 2048 blocks): an answer with sense data, never an exception.
const beyond = await unit.execute({
  cdb: Uint8Array.of(0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0),
  dataInLength: BLOCK,
});
const sense = decodeSense(beyond.sense!);
console.log(
  `READ(10) LBA 2048: ${status(beyond.status)}, ${senseKeyText(sense.key)}, ${ascText(sense.asc, sense.ascq)}`,
);
