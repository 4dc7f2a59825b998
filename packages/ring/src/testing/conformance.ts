import assert from 'node:assert/strict';

/**
 * One transport conformance suite, run against the simulator on every test
 * run and against the real kernel (through /dev/sdX and sg_raw) in the VM.
 * A driver submits SCSI commands to a ring served by a block device of
 * `blocks` x `blockSize` bytes whose contents start as zeros.
 */
export interface ConformanceDriver {
  readonly blockSize: number;
  readonly blocks: number;
  submit(request: {
    cdb: Uint8Array;
    dataOut?: Uint8Array;
    dataInLength?: number;
  }): Promise<ConformanceResult>;
}

export interface ConformanceResult {
  status: number;
  /** sense bytes for CHECK CONDITION (may be longer than the fixed 18 bytes) */
  sense: Uint8Array;
  /** Data-In bytes the initiator received */
  dataIn: Uint8Array;
}

export interface ConformanceCase {
  name: string;
  run(driver: ConformanceDriver): Promise<void>;
}

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;

function read10(lba: number, blocks: number): Uint8Array {
  const cdb = new Uint8Array(10);
  cdb[0] = 0x28;
  new DataView(cdb.buffer).setUint32(2, lba);
  new DataView(cdb.buffer).setUint16(7, blocks);
  return cdb;
}

function write10(lba: number, blocks: number): Uint8Array {
  const cdb = read10(lba, blocks);
  cdb[0] = 0x2a;
  return cdb;
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function senseKey(sense: Uint8Array): { key: number; asc: number } {
  const descriptor = (sense[0]! & 0x7f) >= 0x72;
  return descriptor ? { key: sense[1]! & 0x0f, asc: sense[2]! } : { key: sense[2]! & 0x0f, asc: sense[12]! };
}

export const ringConformanceCases: ConformanceCase[] = [
  {
    name: 'TEST UNIT READY completes GOOD with no data',
    async run(driver) {
      const result = await driver.submit({ cdb: new Uint8Array(6) });
      assert.equal(result.status, GOOD);
      assert.equal(result.dataIn.length, 0);
    },
  },
  {
    name: 'standard INQUIRY returns a direct-access device, cut to the allocation length',
    async run(driver) {
      const full = await driver.submit({ cdb: Uint8Array.of(0x12, 0, 0, 0, 96, 0), dataInLength: 96 });
      assert.equal(full.status, GOOD);
      assert.equal(full.dataIn[0]! & 0x1f, 0, 'peripheral device type 0');
      const additional = full.dataIn[4]!;
      assert.ok(full.dataIn.length >= Math.min(96, 5 + additional));
      const short = await driver.submit({ cdb: Uint8Array.of(0x12, 0, 0, 0, 5, 0), dataInLength: 5 });
      assert.equal(short.status, GOOD);
      assert.deepEqual(short.dataIn, full.dataIn.subarray(0, 5));
    },
  },
  {
    name: 'READ CAPACITY(10) reports the last LBA and the block size',
    async run(driver) {
      const result = await driver.submit({
        cdb: Uint8Array.of(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        dataInLength: 8,
      });
      assert.equal(result.status, GOOD);
      const view = new DataView(result.dataIn.buffer, result.dataIn.byteOffset, 8);
      assert.equal(view.getUint32(0), driver.blocks - 1);
      assert.equal(view.getUint32(4), driver.blockSize);
    },
  },
  {
    name: 'WRITE(10) then READ(10) round-trips a multi-block pattern',
    async run(driver) {
      const count = Math.max(1, Math.floor(65536 / driver.blockSize));
      const data = pattern(count * driver.blockSize, 0xc0ffee);
      const written = await driver.submit({ cdb: write10(3, count), dataOut: data });
      assert.equal(written.status, GOOD);
      const read = await driver.submit({ cdb: read10(3, count), dataInLength: data.length });
      assert.equal(read.status, GOOD);
      assert.deepEqual(read.dataIn, data);
    },
  },
  {
    name: 'many concurrent READs and WRITEs all complete with the right data',
    async run(driver) {
      const writes = Array.from({ length: 16 }, (_, i) =>
        driver.submit({ cdb: write10(64 + i * 2, 2), dataOut: pattern(2 * driver.blockSize, i + 1) }),
      );
      for (const result of await Promise.all(writes)) assert.equal(result.status, GOOD);
      const reads = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          driver.submit({ cdb: read10(64 + i * 2, 2), dataInLength: 2 * driver.blockSize }),
        ),
      );
      reads.forEach((result, i) => {
        assert.equal(result.status, GOOD);
        assert.deepEqual(result.dataIn, pattern(2 * driver.blockSize, i + 1));
      });
    },
  },
  {
    name: 'READ past the last LBA fails with ILLEGAL REQUEST, LBA OUT OF RANGE',
    async run(driver) {
      const result = await driver.submit({
        cdb: read10(driver.blocks - 1, 2),
        dataInLength: 2 * driver.blockSize,
      });
      assert.equal(result.status, CHECK_CONDITION);
      assert.deepEqual(senseKey(result.sense), { key: 0x05, asc: 0x21 });
    },
  },
  {
    name: 'an unsupported opcode fails with ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE',
    async run(driver) {
      const result = await driver.submit({ cdb: Uint8Array.of(0xc5, 0, 0, 0, 0, 0, 0, 0, 0, 0) });
      assert.equal(result.status, CHECK_CONDITION);
      assert.deepEqual(senseKey(result.sense), { key: 0x05, asc: 0x20 });
    },
  },
];
