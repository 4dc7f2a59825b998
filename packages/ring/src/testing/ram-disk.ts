import type { RingCommand } from '../command.js';
import type { TcmuRing } from '../ring.js';

/**
 * A deliberately small SCSI block device over a Uint8Array, enough for the
 * Linux sd probe, sg_inq, sg_readcap and dd: TEST UNIT READY, INQUIRY (standard
 * data, VPD 0x00/0x80), READ CAPACITY(10/16), MODE SENSE(6), READ/WRITE(6/10/16),
 * SYNCHRONIZE CACHE(10). Everything else: ILLEGAL REQUEST, INVALID COMMAND
 * OPERATION CODE. It exists to prove the transport; @tcmu/scsi is the real emulation.
 */
export interface RamDiskOptions {
  blockSize?: number;
  blocks?: number;
  /** existing storage to serve (length must be blocks * blockSize) */
  storage?: Uint8Array;
  serial?: string;
}

export interface RamDisk {
  readonly storage: Uint8Array;
  readonly blockSize: number;
  readonly blocks: number;
  /** Handles one command and completes it on the ring. */
  handle(ring: TcmuRing, command: RingCommand): void;
  /** ring.on('command', ...) with this disk; returns the detach function. */
  serve(ring: TcmuRing): () => void;
}

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;

export function createRamDisk(options: RamDiskOptions = {}): RamDisk {
  const blockSize = options.blockSize ?? 512;
  const blocks = options.blocks ?? (options.storage ? options.storage.length / blockSize : 2048);
  const storage = options.storage ?? new Uint8Array(blocks * blockSize);
  const serial = options.serial ?? 'RINGTEST0001';

  function fail(ring: TcmuRing, command: RingCommand, key: number, asc: number, ascq = 0): undefined {
    const sense = new Uint8Array(18);
    sense[0] = 0x70;
    sense[2] = key;
    sense[7] = 10;
    sense[12] = asc;
    sense[13] = ascq;
    ring.complete(command, CHECK_CONDITION, sense, 0);
  }

  function reply(
    ring: TcmuRing,
    command: RingCommand,
    data: Uint8Array,
    allocationLength: number,
  ): undefined {
    const length = Math.min(data.length, allocationLength, command.dataInLength);
    command.writeDataIn(data.subarray(0, length));
    ring.complete(command, GOOD, undefined, length);
  }

  function transfer(
    ring: TcmuRing,
    command: RingCommand,
    lba: number,
    count: number,
    write: boolean,
  ): undefined {
    if (lba + count > blocks) return fail(ring, command, 0x05, 0x21); // LBA OUT OF RANGE
    const start = lba * blockSize;
    const length = count * blockSize;
    if (command.dataOutLength < length) return fail(ring, command, 0x05, 0x24);
    if (write) {
      let at = start;
      for (const segment of command.dataOutSegments ?? [command.dataOut]) {
        const part = Math.min(segment.length, start + length - at);
        storage.set(segment.subarray(0, part), at);
        at += part;
      }
      ring.complete(command, GOOD);
    } else {
      command.writeDataIn(storage.subarray(start, start + length));
      ring.complete(command, GOOD, undefined, length);
    }
  }

  function handle(ring: TcmuRing, command: RingCommand): undefined {
    const cdb = command.cdb;
    const view = new DataView(cdb.buffer, cdb.byteOffset, cdb.byteLength);
    switch (cdb[0]) {
      case 0x00: // TEST UNIT READY
      case 0x35: // SYNCHRONIZE CACHE(10)
        ring.complete(command, GOOD);
        return;
      case 0x12: {
        const allocation = view.getUint16(3);
        if (cdb[1]! & 0x01) return reply(ring, command, vpd(cdb[2]!), allocation);
        if (cdb[2] !== 0) return fail(ring, command, 0x05, 0x24);
        return reply(ring, command, standardInquiry(), allocation);
      }
      case 0x25: {
        const data = new Uint8Array(8);
        const dv = new DataView(data.buffer);
        dv.setUint32(0, Math.min(blocks - 1, 0xffffffff));
        dv.setUint32(4, blockSize);
        return reply(ring, command, data, 8);
      }
      case 0x9e: {
        if ((cdb[1]! & 0x1f) !== 0x10) return fail(ring, command, 0x05, 0x24);
        const data = new Uint8Array(32);
        const dv = new DataView(data.buffer);
        dv.setBigUint64(0, BigInt(blocks - 1));
        dv.setUint32(8, blockSize);
        return reply(ring, command, data, view.getUint32(10));
      }
      case 0x1a: // MODE SENSE(6): header only, no block descriptors, no pages
        return reply(ring, command, Uint8Array.of(3, 0, 0, 0), cdb[4]!);
      case 0x08:
      case 0x0a: {
        const lba = ((cdb[1]! & 0x1f) << 16) | (cdb[2]! << 8) | cdb[3]!;
        return transfer(ring, command, lba, cdb[4] === 0 ? 256 : cdb[4]!, cdb[0] === 0x0a);
      }
      case 0x28:
      case 0x2a:
        return transfer(ring, command, view.getUint32(2), view.getUint16(7), cdb[0] === 0x2a);
      case 0x88:
      case 0x8a:
        return transfer(ring, command, Number(view.getBigUint64(2)), view.getUint32(10), cdb[0] === 0x8a);
      default:
        return fail(ring, command, 0x05, 0x20);
    }
  }

  function standardInquiry(): Uint8Array {
    const data = new Uint8Array(36);
    data[2] = 0x06; // SPC-4
    data[3] = 0x02; // response data format 2
    data[4] = 31;
    data[7] = 0x02; // CMDQUE
    data.set(ascii('NODETCMU', 8), 8);
    data.set(ascii('RING RAM DISK', 16), 16);
    data.set(ascii('0001', 4), 32);
    return data;
  }

  function vpd(page: number): Uint8Array {
    if (page === 0x00) return Uint8Array.of(0, 0x00, 0, 2, 0x00, 0x80);
    if (page === 0x80) return Uint8Array.of(0, 0x80, 0, serial.length, ...ascii(serial, serial.length));
    return new Uint8Array(0);
  }

  return {
    storage,
    blockSize,
    blocks,
    handle(ring, command) {
      const cdb = command.cdb;
      if (cdb[0] === 0x12 && cdb[1]! & 0x01 && cdb[2] !== 0x00 && cdb[2] !== 0x80) {
        fail(ring, command, 0x05, 0x24);
      } else {
        handle(ring, command);
      }
    },
    serve(ring) {
      const listener = (command: RingCommand) => this.handle(ring, command);
      ring.on('command', listener);
      return () => ring.off('command', listener);
    },
  };
}

function ascii(text: string, width: number): Uint8Array {
  const out = new Uint8Array(width).fill(0x20);
  for (let i = 0; i < Math.min(text.length, width); i++) out[i] = text.charCodeAt(i);
  return out;
}
