/**
 * sg3_utils' sg_persist, sg_xcopy and sg_copy_results through the real kernel (in the VM):
 * persistent reservations on a TCMU LUN are LIO's (target_core_pr.c), EXTENDED COPY between
 * two units of this process is ours (the default third-party copy of @tcmu/device), and its
 * COPY STATUS is read back with RECEIVE COPY RESULTS.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type Device, openDevice } from '@tcmu/device';
import { MemoryBackend } from '@tcmu/scsi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ok, run, sh } from './commands.js';

const BLOCK = 512;
const BLOCKS = (32 << 20) / BLOCK;
/** sg3_utils exit status for RESERVATION CONFLICT (sg_lib.h SG_LIB_CAT_RES_CONFLICT). */
const RESERVATION_CONFLICT = 24;

/** /dev/sgN of a /dev/sdX. */
async function sgOf(disk: string): Promise<string> {
  const [name] = await readdir(`/sys/block/${basename(disk)}/device/scsi_generic`);
  return `/dev/${name}`;
}

let source: Device;
let destination: Device;
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp('/tmp/copy-persist-');
  const memory = () => new MemoryBackend({ blockSize: BLOCK, blockCount: BLOCKS });
  source = await openDevice({ name: 'e2e-xcopy-src', backend: memory(), nodeDir: '/dev/tcmu-e2e' });
  destination = await openDevice({ name: 'e2e-xcopy-dst', backend: memory(), nodeDir: '/dev/tcmu-e2e' });
});
afterAll(async () => {
  await destination?.close();
  await source?.close();
  await rm(scratch, { recursive: true, force: true });
});

describe('sg_persist on a TCMU LUN (kept by LIO)', () => {
  it('register (APTPL), read keys, reserve, read reservation, report capabilities, release, clear', async () => {
    const disk = source.diskPath!;
    await ok('sg_persist', ['--out', '--register', '--param-sark=0x7c01', '--param-aptpl', disk]);
    expect(await ok('sg_persist', ['--in', '--read-keys', disk])).toMatch(
      /1 registered reservation key[\s\S]*0x7c01/,
    );
    await ok('sg_persist', ['--out', '--reserve', '--param-rk=0x7c01', '--prout-type=1', disk]);
    const reservation = await ok('sg_persist', ['--in', '--read-reservation', disk]);
    expect(reservation).toMatch(/Key=0x7c01/);
    expect(reservation).toMatch(/type: Write Exclusive/);
    const capabilities = await ok('sg_persist', ['--in', '--report-capabilities', disk]);
    expect(capabilities).toMatch(/Persist Through Power Loss Active\s*\(PTPL_A\): 1/);
    // A reserve with a key that is not registered conflicts.
    const wrong = await run('sg_persist', [
      '--out',
      '--reserve',
      '--param-rk=0x9999',
      '--prout-type=1',
      disk,
    ]);
    expect(wrong.code).toBe(RESERVATION_CONFLICT);
    // The holder still writes and reads through the ring.
    const data = Buffer.alloc(8 * BLOCK, 0x3e);
    await writeFile(join(scratch, 'pr'), data);
    await sh(`dd if=${join(scratch, 'pr')} of=${disk} bs=${BLOCK} seek=40 oflag=direct status=none`);
    await ok('sg_persist', ['--out', '--release', '--param-rk=0x7c01', '--prout-type=1', disk]);
    expect(await ok('sg_persist', ['--in', '--read-reservation', disk])).toMatch(
      /there is NO reservation held/,
    );
    await ok('sg_persist', ['--out', '--clear', '--param-rk=0x7c01', disk]);
    expect(await ok('sg_persist', ['--in', '--read-keys', disk])).toMatch(
      /there are NO registered reservation keys/,
    );
    await sh(
      `dd if=${disk} of=${join(scratch, 'pr-back')} bs=${BLOCK} skip=40 count=8 iflag=direct status=none`,
    );
    expect((await readFile(join(scratch, 'pr-back'))).equals(data)).toBe(true);
  });
});

describe('sg_xcopy and sg_copy_results between two units of this process', () => {
  it('EXTENDED COPY copies 4 MiB inside the process; COPY STATUS reports it; OPERATING PARAMETERS answers', async () => {
    // sg_xcopy opens the sg nodes of the disks itself (it needs /dev/sgN).
    const src = await sgOf(source.diskPath!);
    const dst = await sgOf(destination.diskPath!);
    const data = Buffer.alloc(4 << 20);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32BE((i * 2654435761) >>> 0, i);
    await writeFile(join(scratch, 'pattern'), data);
    await sh(
      `dd if=${join(scratch, 'pattern')} of=${source.diskPath!} bs=1M seek=2 oflag=direct status=none`,
    );
    const writesBefore = destination.stats().writes;
    const readsBefore = source.stats().reads;
    await ok('sg_xcopy', [
      `if=${src}`,
      `of=${dst}`,
      `bs=${BLOCK}`,
      `skip=${(2 << 20) / BLOCK}`,
      `seek=${(8 << 20) / BLOCK}`,
      `count=${data.length / BLOCK}`,
      'list_id=7',
      '--on_dst',
    ]);
    // The blocks moved inside the process: no READ reached the source, no WRITE the destination.
    expect(destination.stats().writes).toBe(writesBefore);
    expect(source.stats().reads).toBe(readsBefore);
    await sh(
      `dd if=${destination.diskPath!} of=${join(scratch, 'copied')} bs=1M skip=8 count=4 iflag=direct status=none`,
    );
    expect((await readFile(join(scratch, 'copied'))).equals(data)).toBe(true);

    const status = await ok('sg_copy_results', ['--status', '--list_id=7', dst]);
    expect(status).toMatch(/Copy manager status: Operation completed without errors/i);
    const params = await ok('sg_copy_results', ['--params', dst]);
    expect(params).toMatch(/Maximum target descriptor count:\s*\d+/i);
    // An unknown list identifier has no status.
    const unknown = await run('sg_copy_results', ['--status', '--list_id=99', dst]);
    expect(unknown.code).not.toBe(0);
  });
});
