/**
 * SANITIZE and LOG SENSE end to end on the real kernel (run in the VM by `pnpm test:kernel`):
 * sg3_utils' sg_sanitize and sg_logs against a memory-backed /dev/sdX, through sd/sg,
 * LIO's core and the TCMU ring.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Device, openDevice } from '@tcmu/device';
import { MemoryBackend } from '@tcmu/scsi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ok, run, runRaw, sh } from './commands.js';

const BLOCKS = (16 << 20) / 512;

let scratch: string;
let device: Device;
let disk: string;
beforeAll(async () => {
  scratch = await mkdtemp('/tmp/sanitize-e2e-');
  device = await openDevice({
    name: 'e2e-sanitize',
    backend: new MemoryBackend({ blockSize: 512, blockCount: BLOCKS }),
    nodeDir: '/dev/tcmu-e2e',
  });
  disk = device.diskPath!;
});
afterAll(async () => {
  await device?.close();
  await rm(scratch, { recursive: true, force: true });
});

/** The Logical Block Provisioning page's resource counts (parameters 0001h, 0002h), in threshold sets. */
const resourceCounts = async () => {
  // Twice: the whole page with its header (once gives the parameters alone in newer sg_logs).
  const page = await runRaw('sg_logs', ['--page=0xc', '--raw', '--raw', disk]);
  const counts = new Map<number, number>();
  for (let at = 4; at < page.length; at += 4 + page[at + 3]!) {
    counts.set(page.readUInt16BE(at), page.readUInt32BE(at + 4));
  }
  return { available: counts.get(0x0001), used: counts.get(0x0002) };
};

describe('LOG SENSE (sg_logs)', () => {
  it('lists the supported pages, and the supported pages and subpages', async () => {
    const pages = await ok('sg_logs', ['--page=0', disk]);
    expect(pages).toMatch(/0x0c\s+Logical block provisioning/i);
    expect(pages).toMatch(/0x2f\s+Informational exceptions/i);
    const raw = await runRaw('sg_logs', ['--page=0,0xff', '--raw', disk]);
    expect([...raw]).toEqual([0x40, 0xff, 0, 8, 0x00, 0x00, 0x00, 0xff, 0x0c, 0x00, 0x2f, 0x00]);
  });

  it('Logical Block Provisioning: used and available counts in threshold sets of 2 blocks follow the writes', async () => {
    expect(await resourceCounts()).toEqual({ available: BLOCKS / 2, used: 0 });
    await sh(`head -c $((1 << 20)) /dev/urandom | dd of=${disk} bs=1M oflag=direct status=none`);
    expect(await resourceCounts()).toEqual({ available: (BLOCKS - 2048) / 2, used: 1024 });
  });

  it('Informational Exceptions: no exception pending', async () => {
    expect(await ok('sg_logs', ['--page=0x2f', disk])).toMatch(/IE asc = 0x0, ascq = 0x0/);
  });

  it('VPD B1h WABEREQ 01b and B2h THRESHOLD EXPONENT 1 agree with what is offered', async () => {
    const b1 = await runRaw('sg_vpd', ['--page=0xb1', '--raw', disk]);
    expect(b1[7]! >> 6).toBe(0b01);
    const b2 = await runRaw('sg_vpd', ['--page=0xb2', '--raw', disk]);
    expect(b2[4]).toBe(1);
  });
});

describe('SANITIZE (sg_sanitize)', () => {
  it('REPORT SUPPORTED OPERATION CODES lists OVERWRITE, BLOCK ERASE and EXIT FAILURE MODE', async () => {
    const raw = await runRaw('sg_opcodes', ['--raw', disk]);
    const actions: number[] = [];
    for (let at = 4; at + 8 <= raw.length; at += 8) {
      if (raw[at] === 0x48) actions.push(raw.readUInt16BE(at + 2));
    }
    expect(actions).toEqual([0x01, 0x02, 0x1f]);
  });

  it('--overwrite --wait (IMMED=0): every block holds the pattern from its first byte', async () => {
    const patternFile = join(scratch, 'pattern');
    await writeFile(patternFile, Buffer.from('tcmu'));
    await ok('sg_sanitize', ['--quick', '--wait', '--overwrite', `--pattern=${patternFile}`, disk]);
    const expected = join(scratch, 'expected');
    await writeFile(expected, Buffer.alloc(1 << 20, 'tcmu'));
    for (const skip of [0, 15]) {
      await sh(`dd if=${disk} bs=1M skip=${skip} count=1 iflag=direct status=none | cmp - ${expected}`);
    }
  });

  it('--block --early (IMMED=1): the unit becomes ready, every block reads zero and nothing stays mapped', async () => {
    await ok('sg_sanitize', ['--quick', '--early', '--block', disk]);
    for (let tries = 0; (await run('sg_turs', [disk])).code !== 0; tries++) {
      expect(tries).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 100));
    }
    await sh(`dd if=${disk} bs=1M iflag=direct status=none | cmp -n $((16 << 20)) - /dev/zero`);
    expect(await resourceCounts()).toEqual({ available: BLOCKS / 2, used: 0 });
  });

  it('--crypto: CRYPTOGRAPHIC ERASE is not supported (ILLEGAL REQUEST / INVALID FIELD IN CDB)', async () => {
    const result = await run('sg_sanitize', ['--quick', '--crypto', disk]);
    expect(result.code).toBe(5); // SG_LIB_CAT_ILLEGAL_REQ
    const raw = await run('sg_raw', [disk, '48', '03', '00', '00', '00', '00', '00', '00', '00', '00']);
    expect(`${raw.stdout}${raw.stderr}`).toMatch(/invalid field in cdb/i);
  });

  it('--fail: EXIT FAILURE MODE with nothing failed is GOOD, and no sense is left pending', async () => {
    // --early: IMMED without sg_sanitize's minute-long REQUEST SENSE polling.
    await ok('sg_sanitize', ['--early', '--fail', disk]);
    expect(await ok('sg_requests', [disk])).not.toMatch(/sanitize/i);
  });
});
