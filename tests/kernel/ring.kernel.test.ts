// The ring against the real target_core_user (run inside the VM): a TCMU
// backstore made by hand through configfs, exported as /dev/sdX by tcm_loop,
// served by TcmuRing + the RAM-disk fixture, probed with sg3_utils and dd.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TcmuRing } from '../../packages/ring/src/index.js';
import {
  type ConformanceDriver,
  type ConformanceResult,
  createRamDisk,
  ringConformanceCases,
} from '../../packages/ring/src/testing/index.js';

const run = promisify(execFile);
const CFS = '/sys/kernel/config/target';
const HBA = 'user_73';
const NAME = 'ringtest';
const BLOCK_SIZE = 512;
const BLOCKS = 65536; // 32 MiB
const WWN = 'naa.5001405a1b2c3d01';
const INITIATOR = 'naa.5001405a1b2c3d0f';
const backstore = join(CFS, 'core', HBA, NAME);
const tpg = join(CFS, 'loopback', WWN, 'tpgt_1');

let ring: TcmuRing;
let disk: string;
let work: string;
const commandsSeen = new Set<number>();

/** Writes a configfs attribute asynchronously: the kernel may call back into our ring meanwhile. */
async function attr(path: string, value: string): Promise<void> {
  await writeFile(path, value);
}

async function findUio(expectedName: string): Promise<string> {
  for (const entry of await readdir('/sys/class/uio')) {
    const name = (await readFile(`/sys/class/uio/${entry}/name`, 'utf8')).trim();
    if (name === expectedName) return `/dev/${entry}`;
  }
  throw new Error(`no UIO device named ${expectedName}`);
}

async function findDisk(): Promise<string> {
  const host = (await readFile(join(tpg, 'address'), 'utf8')).trim().split(':')[0];
  const dir = `/sys/class/scsi_host/host${host}/device/target${host}:0:1/${host}:0:1:0/block`;
  for (let i = 0; i < 300; i++) {
    if (existsSync(dir)) {
      const [name] = await readdir(dir);
      if (name && existsSync(`/dev/${name}`)) return `/dev/${name}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the SCSI disk did not appear under ${dir}`);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ring-kernel-'));
  await mkdir(backstore, { recursive: true });
  await attr(
    join(backstore, 'control'),
    `dev_config=tcmu-node-test/x,dev_size=${BLOCKS * BLOCK_SIZE},hw_block_size=${BLOCK_SIZE},nl_reply_supported=-1`,
  );
  await attr(join(backstore, 'attrib', 'tmr_notification'), '1').catch(() => {});
  await attr(join(backstore, 'enable'), '1');
  const uio = await findUio(`tcm-user/${HBA.slice(5)}/${NAME}/tcmu-node-test/x`);
  // Map and serve before linking the LUN: the link triggers the SCSI scan.
  ring = TcmuRing.open({ uioPath: uio });
  ring.on('error', (error) => {
    throw error;
  });
  const ramDisk = createRamDisk({ blockSize: BLOCK_SIZE, blocks: BLOCKS });
  ring.on('command', (command) => {
    commandsSeen.add(command.cdb[0]!);
    ramDisk.handle(ring, command);
  });
  await mkdir(tpg, { recursive: true });
  await attr(join(tpg, 'nexus'), INITIATOR);
  await mkdir(join(tpg, 'lun', 'lun_0'));
  await symlink(backstore, join(tpg, 'lun', 'lun_0', NAME));
  disk = await findDisk();
});

afterAll(async () => {
  if (existsSync(join(tpg, 'lun', 'lun_0', NAME))) await unlink(join(tpg, 'lun', 'lun_0', NAME));
  if (existsSync(join(tpg, 'lun', 'lun_0'))) await rmdir(join(tpg, 'lun', 'lun_0'));
  if (existsSync(tpg)) {
    await attr(join(tpg, 'nexus'), 'NULL').catch(() => {});
    await rmdir(tpg);
    await rmdir(join(CFS, 'loopback', WWN));
  }
  const closed = await ring?.close({ drainTimeoutMs: 5000 });
  expect(closed?.abandoned ?? []).toEqual([]);
  if (existsSync(backstore)) await rmdir(backstore);
  if (existsSync(join(CFS, 'core', HBA))) await rmdir(join(CFS, 'core', HBA));
  if (work) await rm(work, { recursive: true, force: true });
});

describe('TCMU ring on the real kernel', () => {
  it('reads the capabilities of this kernel from the mailbox', () => {
    // Debian 6.1 sets OOOC, READ_LEN, TMR and KEEP_BUF.
    expect(ring.flags).toEqual({ ooo: true, readLen: true, tmr: true, keepBuf: true });
    expect(ring.cmdrOffset).toBe(128);
    expect(ring.cmdrSize).toBe(8 * 1024 * 1024 - 128);
  });

  it('served the kernel SCSI scan (INQUIRY, READ CAPACITY...)', () => {
    expect(commandsSeen.has(0x12)).toBe(true);
    expect(commandsSeen.has(0x25) || commandsSeen.has(0x9e)).toBe(true);
  });

  it('sg_inq reports our standard INQUIRY data', async () => {
    const { stdout } = await run('sg_inq', [disk]);
    expect(stdout).toMatch(/Vendor identification: NODETCMU/);
    expect(stdout).toMatch(/Product identification: RING RAM DISK/);
    expect(stdout).toMatch(/PQual=0\s+PDT=0/);
  });

  it('sg_readcap -l reports the capacity', async () => {
    const { stdout } = await run('sg_readcap', ['-l', disk]);
    expect(stdout).toMatch(new RegExp(`Last LBA=${BLOCKS - 1} `));
    expect(stdout).toMatch(/Logical block length=512 bytes/);
  });

  it('O_DIRECT dd write, read back and compare (4 MiB)', async () => {
    const pattern = randomBytes(4 << 20);
    await writeFile(join(work, 'pattern'), pattern);
    const source = join(work, 'pattern');
    const target = join(work, 'back');
    await run('dd', [`if=${source}`, `of=${disk}`, 'bs=1M', 'seek=1', 'oflag=direct', 'status=none']);
    await run('dd', [
      `if=${disk}`,
      `of=${target}`,
      'bs=64k',
      'skip=16',
      'count=64',
      'iflag=direct',
      'status=none',
    ]);
    const back = await readFile(join(work, 'back'));
    expect(back.length).toBe(pattern.length);
    expect(Buffer.compare(back, pattern)).toBe(0);
  });
});

/**
 * sg3_utils prints sense as "Raw sense data (in hex)[, sb_len=N]:" followed by
 * indented lines of hex byte pairs (8 + 8 per line); collect them until the
 * first line that is not hex bytes.
 */
function parseRawSense(stderr: string): Uint8Array {
  const lines = stderr.split('\n');
  const start = lines.findIndex((line) => /Raw sense data/i.test(line));
  if (start < 0) return new Uint8Array(0);
  const bytes: number[] = [];
  for (const line of lines.slice(start + 1)) {
    const tokens = line.trim().split(/\s+/);
    if (tokens.length === 0 || !tokens.every((token) => /^[0-9a-f]{2}$/i.test(token))) break;
    for (const token of tokens) bytes.push(Number.parseInt(token, 16));
  }
  return Uint8Array.from(bytes);
}

/** Submits CDBs through SG_IO (sg_raw) on the exported disk. */
const kernelDriver: ConformanceDriver = {
  blockSize: BLOCK_SIZE,
  blocks: BLOCKS,
  async submit(request): Promise<ConformanceResult> {
    const out = join(work, `out-${Math.random().toString(16).slice(2)}`);
    const input = join(work, `in-${Math.random().toString(16).slice(2)}`);
    const args = ['-v', '-t', '60'];
    if (request.dataOut) {
      await writeFile(input, request.dataOut);
      args.push('-s', String(request.dataOut.length), '-i', input);
    }
    if (request.dataInLength) args.push('-r', String(request.dataInLength), '-o', out);
    args.push(disk, ...[...request.cdb].map((b) => b.toString(16).padStart(2, '0')));
    let stderr: string;
    try {
      ({ stderr } = await run('sg_raw', args));
    } catch (error) {
      stderr = String((error as { stderr?: string }).stderr ?? '');
    }
    const statusMatch = /SCSI Status: (.+)/.exec(stderr);
    if (!statusMatch) throw new Error(`sg_raw gave no SCSI status:\n${stderr}`);
    const statusText = statusMatch[1]!.trim();
    const status = /Good/i.test(statusText) ? 0x00 : /Check Condition/i.test(statusText) ? 0x02 : 0xff;
    const sense = parseRawSense(stderr);
    const dataIn = existsSync(out) ? new Uint8Array(await readFile(out)) : new Uint8Array(0);
    await rm(out, { force: true });
    await rm(input, { force: true });
    return { status, sense, dataIn };
  },
};

describe('ring conformance on the real kernel (sg_raw)', () => {
  for (const testCase of ringConformanceCases) {
    it(testCase.name, () => testCase.run(kernelDriver));
  }
});
