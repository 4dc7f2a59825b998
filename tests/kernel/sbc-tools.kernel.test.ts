/**
 * The SBC-4 commands of issue 11 through the real kernel (run in the VM by `pnpm test:kernel`):
 * sg3_utils' own tools (sg_verify, sg_write_verify, sg_seek --pre-fetch, sg_write_x --or and
 * --atomic, sg_opcodes, sg_vpd) and sg_raw for the CDBs no tool sends (VERIFY(12), WRITE AND
 * VERIFY(12), READ DEFECT DATA), against a memory-backed unit with atomic writes on, through
 * sd/sg, LIO's core and the TCMU ring.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Device, openDevice } from '@tcmu/device';
import { LogicalUnit, MemoryBackend } from '@tcmu/scsi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ok, run, sh } from './commands.js';

/** sg3_utils exit statuses (sg_lib.h). */
const ILLEGAL_REQUEST = 5;
const MISCOMPARE = 14;
const RECOVERED = 21;
const CONDITION_MET = 25;

const BLOCK = 512;
const BLOCKS = (64 << 20) / BLOCK;

let device: Device;
let disk: string;
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp('/tmp/sbc-tools-');
  const backend = new MemoryBackend({ blockSize: BLOCK, blockCount: BLOCKS });
  // The device's own unit has no atomic writes (config default); this one offers them.
  const unit = new LogicalUnit({
    backend,
    powerOnUnitAttention: false,
    config: { maxTransferBlocks: 2048, maxAtomicTransferBlocks: 64, maxPrefetchBlocks: 1024 },
  });
  device = await openDevice({ name: 'e2e-sbc', backend, handler: (cmd) => unit.execute(cmd) });
  disk = device.diskPath!;
});
afterAll(async () => {
  await device?.close();
  await rm(scratch, { recursive: true, force: true });
});

const file = async (name: string, bytes: Buffer) => {
  const path = join(scratch, name);
  await writeFile(path, bytes);
  return path;
};
const put = (path: string, lba: number) =>
  sh(`dd if=${path} of=${disk} bs=${BLOCK} seek=${lba} oflag=direct status=none`);
const get = async (lba: number, blocks: number) => {
  const path = join(scratch, `back-${lba}`);
  await sh(`dd if=${disk} of=${path} bs=${BLOCK} skip=${lba} count=${blocks} iflag=direct status=none`);
  return readFile(path);
};
const raw = (args: readonly string[]) => run('sg_raw', args);

describe('VERIFY and WRITE AND VERIFY', () => {
  it('sg_verify: VERIFY(10) and (16) of the medium, BYTCHK 1 against a file (a miscompare exits 14)', async () => {
    const data = Buffer.alloc(8 * BLOCK, 0x5c);
    await put(await file('verify', data), 100);
    await ok('sg_verify', ['--lba=100', '--count=8', disk]);
    await ok('sg_verify', ['--16', '--lba=100', '--count=8', disk]);
    await ok('sg_verify', [
      `--in=${join(scratch, 'verify')}`,
      `--ndo=${data.length}`,
      '--lba=100',
      '--count=8',
      disk,
    ]);
    const other = await file('verify-other', Buffer.alloc(8 * BLOCK, 0x5d));
    const miss = await run('sg_verify', [
      '--quiet',
      `--in=${other}`,
      `--ndo=${data.length}`,
      '--lba=100',
      '--count=8',
      disk,
    ]);
    expect(miss.code).toBe(MISCOMPARE);
  });

  it('sg_write_verify: WRITE AND VERIFY(10) and (16) with BYTCHK 1 write what they compare', async () => {
    const data = Buffer.alloc(4 * BLOCK, 0x3e);
    const path = await file('write-verify', data);
    await ok('sg_write_verify', [`--in=${path}`, '--lba=200', '--num=4', '--bytchk=1', disk]);
    await ok('sg_write_verify', ['--16', `--in=${path}`, '--lba=204', '--num=4', '--bytchk=1', disk]);
    expect((await get(200, 8)).equals(Buffer.concat([data, data]))).toBe(true);
    const reserved = await run('sg_write_verify', [
      `--in=${path}`,
      '--lba=200',
      '--num=4',
      '--bytchk=3',
      disk,
    ]);
    expect(reserved.code).toBe(ILLEGAL_REQUEST);
  });

  it('sg_raw: VERIFY(12) and WRITE AND VERIFY(12)', async () => {
    const block = await file('block12', Buffer.alloc(BLOCK, 0x71));
    /** opcode, BYTCHK 01b, the 32-bit LBA, one block, as sg_raw's hex bytes. */
    const oneBlock = (opcode: number, lba: number) => {
      const cdb = Buffer.alloc(12);
      cdb[0] = opcode;
      cdb[1] = 0x02;
      cdb.writeUInt32BE(lba, 2);
      cdb.writeUInt32BE(1, 6);
      return raw([
        '-s',
        `${BLOCK}`,
        '-i',
        block,
        disk,
        ...[...cdb].map((b) => b.toString(16).padStart(2, '0')),
      ]);
    };
    const written = await oneBlock(0xae, 300); // WRITE AND VERIFY(12)
    expect(written.code, written.stderr).toBe(0);
    const same = await oneBlock(0xaf, 300); // VERIFY(12) of that block: GOOD
    expect(same.code, same.stderr).toBe(0);
    const next = await oneBlock(0xaf, 301); // of the next one, zeros: MISCOMPARE
    expect(`${next.stdout}${next.stderr}`).toMatch(/Miscompare/i);
  });
});

describe('PRE-FETCH', () => {
  it('sg_seek --pre-fetch: CONDITION MET for (16), (10) and IMMED; over MAXIMUM PREFETCH LENGTH refused', async () => {
    expect((await run('sg_seek', ['--pre-fetch', '--lba=0', '--num-blocks=128', disk])).code).toBe(
      CONDITION_MET,
    );
    expect((await run('sg_seek', ['--pre-fetch', '--10', '--lba=1000', '--num-blocks=8', disk])).code).toBe(
      CONDITION_MET,
    );
    expect((await run('sg_seek', ['--pre-fetch', '--immed', '--lba=0', '--num-blocks=1', disk])).code).toBe(
      CONDITION_MET,
    );
    expect((await run('sg_seek', ['--pre-fetch', '--lba=0', '--num-blocks=1025', disk])).code).toBe(
      ILLEGAL_REQUEST,
    );
    const vpd = await ok('sg_vpd', ['--page=bl', disk]);
    expect(vpd).toMatch(/Maximum prefetch.*length: 1024/i);
  });
});

describe('ORWRITE and WRITE ATOMIC', () => {
  it('sg_write_x --or: ORWRITE(16) ORs the data into the medium', async () => {
    await put(await file('or-base', Buffer.alloc(2 * BLOCK, 0x0f)), 400);
    await ok('sg_write_x', [
      '--or',
      `--in=${await file('or-data', Buffer.alloc(2 * BLOCK, 0xf0))}`,
      '--lba=400',
      '--num=2',
      disk,
    ]);
    expect((await get(400, 2)).every((b) => b === 0xff)).toBe(true);
  });

  it('sg_write_x --atomic: WRITE ATOMIC(16) within the advertised limits, refused beyond them', async () => {
    const vpd = await ok('sg_vpd', ['--page=bl', disk]);
    expect(vpd).toMatch(/Maximum atomic transfer length: 64/i);
    const data = Buffer.alloc(64 * BLOCK, 0x42);
    await ok('sg_write_x', [
      '--atomic=0',
      `--in=${await file('atomic', data)}`,
      '--lba=512',
      '--num=64',
      disk,
    ]);
    expect((await get(512, 64)).equals(data)).toBe(true);
    const over = await file('atomic-over', Buffer.alloc(65 * BLOCK, 1));
    expect(
      (await run('sg_write_x', ['--atomic=0', `--in=${over}`, '--lba=512', '--num=65', disk])).code,
    ).toBe(ILLEGAL_REQUEST);
    const boundary = await run('sg_write_x', [
      '--atomic=8',
      `--in=${join(scratch, 'atomic')}`,
      '--lba=512',
      '--num=64',
      disk,
    ]);
    expect(boundary.code).toBe(ILLEGAL_REQUEST); // MAXIMUM ATOMIC BOUNDARY SIZE 0
  });

  it('sg_opcodes: the new commands are listed, WRITE ATOMIC(16) with its CDB usage data', async () => {
    const all = await ok('sg_opcodes', [disk]);
    for (const name of [
      /Verify\(12\)/i,
      /Pre-fetch\(16\)/i,
      /Orwrite\(16\)/i,
      /Write atomic\(16\)/i,
      /Read defect data\(12\)/i,
    ]) {
      expect(all).toMatch(name);
    }
    const one = await ok('sg_opcodes', ['--opcode=0x9c', disk]);
    expect(one).toMatch(/Usage data:\s+9c f8 ff ff ff ff ff ff ff ff ff ff ff ff 3f 00/i);
  });
});

describe('READ DEFECT DATA', () => {
  it('sg_raw: empty lists in the format asked for; a vendor-specific format gets RECOVERED ERROR', async () => {
    // READ DEFECT DATA(10), PLIST and GLIST, long block format, 64 bytes.
    const lists = await raw(['-r', '64', disk, '37', '00', '1b', '00', '00', '00', '00', '00', '40', '00']);
    expect(lists.code, lists.stderr).toBe(0);
    expect(lists.stderr).toMatch(/Received 4 bytes of data:[\s\S]*00 1b 00 00/); // sg_raw dumps Data-In on stderr
    // READ DEFECT DATA(12), PLIST, vendor-specific format: the data, then 01/1C 00.
    const vendor = await raw([
      '-r',
      '64',
      disk,
      'b7',
      '16',
      '00',
      '00',
      '00',
      '00',
      '00',
      '00',
      '00',
      '40',
      '00',
      '00',
    ]);
    expect(`${vendor.stdout}${vendor.stderr}`).toMatch(/Recovered error/i);
    expect(`${vendor.stdout}${vendor.stderr}`).toMatch(/Defect list not found/i);
    expect(vendor.stderr).toMatch(/Received 8 bytes of data:[\s\S]*00 13 00 00 00 00 00 00/);
    expect(vendor.code).toBe(RECOVERED);
  });
});
