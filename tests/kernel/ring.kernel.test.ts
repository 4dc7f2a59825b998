// The ring against the real target_core_user (run inside the VM): a TCMU
// backstore made by hand through configfs, exported as /dev/sdX by tcm_loop,
// served by TcmuRing with the RAM-disk fixture and with @tcmu/scsi, probed
// with sg3_utils (sg_inq, sg_readcap, sg_raw for the conformance cases) and dd.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ABI,
  CommandAbortedError,
  type RingCommand,
  TcmuRing,
  type TmrNotice,
} from '../../packages/ring/src/index.js';
import { type CommandResult, LogicalUnit, MemoryBackend } from '../../packages/scsi/src/index.js';
import {
  type ConformanceDriver,
  type ConformanceResult,
  createRamDisk,
  ringConformanceCases,
} from '../../packages/ring/src/testing/index.js';

const run = promisify(execFile);
const CFS = '/sys/kernel/config/target';
const BLOCK_SIZE = 512;
const BLOCKS = 65536; // 32 MiB

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

interface KernelDisk {
  ring: TcmuRing;
  /** /dev/sdX */
  disk: string;
  /** a scratch directory in the guest */
  work: string;
  /** first CDB byte of every command served */
  opcodesSeen: Set<number>;
}

/**
 * Registers beforeAll/afterAll that build a TCMU backstore by hand
 * (core/user_<hba>/<name>, control, enable), open its ring, serve it with
 * `serve`, then export it through tcm_loop (nexus, lun_0, symlink) and wait
 * for /dev/sdX; teardown in reverse.
 */
function useKernelDisk(hba: number, wwnSuffix: string, serve: (ring: TcmuRing) => void): KernelDisk {
  const name = `ringtest${hba}`;
  const backstore = join(CFS, 'core', `user_${hba}`, name);
  const wwn = `naa.5001405a1b2c${wwnSuffix}1`;
  const tpg = join(CFS, 'loopback', wwn, 'tpgt_1');
  const lun = join(tpg, 'lun', 'lun_0');
  const state = { opcodesSeen: new Set<number>() } as KernelDisk;

  beforeAll(async () => {
    state.work = await mkdtemp(join(tmpdir(), 'ring-kernel-'));
    await mkdir(backstore, { recursive: true });
    await attr(
      join(backstore, 'control'),
      `dev_config=tcmu-node-test/x,dev_size=${BLOCKS * BLOCK_SIZE},hw_block_size=${BLOCK_SIZE},nl_reply_supported=-1`,
    );
    await attr(join(backstore, 'attrib', 'tmr_notification'), '1');
    await attr(join(backstore, 'enable'), '1');
    const uio = await findUio(`tcm-user/${hba}/${name}/tcmu-node-test/x`);
    // Map and serve before linking the LUN: the link triggers the SCSI scan.
    state.ring = TcmuRing.open({ uioPath: uio });
    state.ring.on('error', (error) => {
      throw error;
    });
    state.ring.on('command', (command) => state.opcodesSeen.add(command.cdb[0]!));
    serve(state.ring);
    await mkdir(tpg, { recursive: true });
    await attr(join(tpg, 'nexus'), `naa.5001405a1b2c${wwnSuffix}f`);
    await mkdir(lun);
    await symlink(backstore, join(lun, name));
    const host = (await readFile(join(tpg, 'address'), 'utf8')).trim().split(':')[0];
    const dir = `/sys/class/scsi_host/host${host}/device/target${host}:0:1/${host}:0:1:0/block`;
    for (let i = 0; i < 300 && !state.disk; i++) {
      const [block] = existsSync(dir) ? await readdir(dir) : [];
      if (block && existsSync(`/dev/${block}`)) state.disk = `/dev/${block}`;
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!state.disk) throw new Error(`the SCSI disk did not appear under ${dir}`);
  });

  afterAll(async () => {
    if (existsSync(join(lun, name))) await unlink(join(lun, name));
    if (existsSync(lun)) await rmdir(lun);
    if (existsSync(tpg)) {
      await attr(join(tpg, 'nexus'), 'NULL').catch(() => {});
      await rmdir(tpg);
      await rmdir(join(CFS, 'loopback', wwn));
    }
    const closed = await state.ring?.close({ drainTimeoutMs: 5000 });
    expect(closed?.abandoned ?? []).toEqual([]);
    if (existsSync(backstore)) await rmdir(backstore);
    if (existsSync(join(CFS, 'core', `user_${hba}`))) await rmdir(join(CFS, 'core', `user_${hba}`));
    if (state.work) await rm(state.work, { recursive: true, force: true });
  });

  return state;
}

async function ddRoundTrip(target: KernelDisk): Promise<void> {
  const pattern = randomBytes(4 << 20);
  const source = join(target.work, 'pattern');
  const back = join(target.work, 'back');
  await writeFile(source, pattern);
  await run('dd', [`if=${source}`, `of=${target.disk}`, 'bs=1M', 'seek=1', 'oflag=direct', 'status=none']);
  await run('dd', [
    `if=${target.disk}`,
    `of=${back}`,
    'bs=64k',
    'skip=16',
    'count=64',
    'iflag=direct',
    'status=none',
  ]);
  const read = await readFile(back);
  expect(read.length).toBe(pattern.length);
  expect(Buffer.compare(read, pattern)).toBe(0);
}

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
const sgRawDriver = (target: KernelDisk): ConformanceDriver => ({
  blockSize: BLOCK_SIZE,
  blocks: BLOCKS,
  async submit(request): Promise<ConformanceResult> {
    const { work, disk } = target;
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
});

describe('TCMU ring on the real kernel, served by the RAM-disk fixture', () => {
  // READ(10) of HELD_LBA is held (once) until the kernel aborts it through a TMR.
  const HELD_LBA = 12345;
  const held: RingCommand[] = [];
  const notices: TmrNotice[] = [];
  const target = useKernelDisk(73, 'd0', (ring) => {
    const ramDisk = createRamDisk({ blockSize: BLOCK_SIZE, blocks: BLOCKS });
    ring.on('tmr', (notice) => notices.push(notice));
    ring.on('command', (command) => {
      const lba = new DataView(command.cdb.buffer, command.cdb.byteOffset).getUint32(2);
      if (command.cdb[0] === 0x28 && lba === HELD_LBA && held.length === 0) {
        held.push(command);
        command.signal.addEventListener('abort', () => ring.complete(command, 0x40)); // TASK ABORTED
        return;
      }
      ramDisk.handle(ring, command);
    });
  });

  it('reads the capabilities of this kernel from the mailbox', () => {
    // Debian 6.1 sets OOOC, READ_LEN, TMR and KEEP_BUF.
    expect(target.ring.flags).toEqual({ ooo: true, readLen: true, tmr: true, keepBuf: true });
    expect(target.ring.cmdrOffset).toBe(128);
    expect(target.ring.cmdrSize).toBe(8 * 1024 * 1024 - 128);
  });

  it('served the kernel SCSI scan (INQUIRY, READ CAPACITY...)', () => {
    expect(target.opcodesSeen.has(0x12)).toBe(true);
    expect(target.opcodesSeen.has(0x25) || target.opcodesSeen.has(0x9e)).toBe(true);
  });

  it('sg_inq reports our standard INQUIRY data', async () => {
    const { stdout } = await run('sg_inq', [target.disk]);
    expect(stdout).toMatch(/Vendor identification: NODETCMU/);
    expect(stdout).toMatch(/Product identification: RING RAM DISK/);
    expect(stdout).toMatch(/PQual=0\s+PDT=0/);
  });

  it('sg_readcap -l reports the capacity', async () => {
    const { stdout } = await run('sg_readcap', ['-l', target.disk]);
    expect(stdout).toMatch(new RegExp(`Last LBA=${BLOCKS - 1} `));
    expect(stdout).toMatch(/Logical block length=512 bytes/);
  });

  it('O_DIRECT dd write, read back and compare (4 MiB)', () => ddRoundTrip(target));

  it('a LUN reset arrives as a TMR entry that aborts the command in flight', async () => {
    const reader = run('dd', [
      `if=${target.disk}`,
      'of=/dev/null',
      'bs=512',
      `skip=${HELD_LBA}`,
      'count=1',
      'iflag=direct',
    ]).catch(() => undefined);
    for (let i = 0; i < 300 && held.length === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(held).toHaveLength(1);
    await run('sg_reset', ['-d', target.disk]);
    expect(notices).toContainEqual({ type: ABI.tmrType.lunReset, commandIds: [held[0]!.id] });
    expect(held[0]!.signal.reason).toBeInstanceOf(CommandAbortedError);
    await reader;
    // The core leaves a UNIT ATTENTION (29/xx, reset occurred) for the initiator: consume it.
    const tur = () => sgRawDriver(target).submit({ cdb: new Uint8Array(6) });
    let result = await tur();
    for (let i = 0; i < 3 && result.status !== 0; i++) {
      expect(result.sense[2]! & 0x0f).toBe(0x06);
      expect(result.sense[12]).toBe(0x29);
      result = await tur();
    }
    expect(result.status).toBe(0);
  });

  describe('conformance through sg_raw', () => {
    for (const testCase of ringConformanceCases) {
      it(testCase.name, () => testCase.run(sgRawDriver(target)));
    }
  });
});

/**
 * The emulation from @tcmu/scsi behind the ring: the ring command is the request itself
 * (READ fills the ring's Data-In memory in place) and the result says the direction.
 */
function serveWithScsi(ring: TcmuRing): void {
  const unit = new LogicalUnit({
    backend: new MemoryBackend({ blockSize: BLOCK_SIZE, blockCount: BLOCKS }),
    config: { vendor: 'NODETCMU', product: 'RING SCSI' },
    powerOnUnitAttention: false,
  });
  ring.on('command', (command) => {
    const finish = (result: CommandResult) => {
      let readLen: number | undefined;
      if (result.direction === 'in' || result.direction === 'bidi') {
        if (result.dataIn && !command.isRingMemory(result.dataIn)) command.writeDataIn(result.dataIn);
        readLen = command.dataInLength - result.residual;
      }
      ring.complete(command, result.status, result.sense, readLen);
    };
    const result = unit.execute(command);
    if (result instanceof Promise) void result.then(finish);
    else finish(result);
  });
}

describe('TCMU ring on the real kernel, served by @tcmu/scsi', () => {
  const target = useKernelDisk(74, 'e0', serveWithScsi);

  it('sg_inq reports the emulated INQUIRY data', async () => {
    const { stdout } = await run('sg_inq', [target.disk]);
    expect(stdout).toMatch(/Vendor identification: NODETCMU/);
    expect(stdout).toMatch(/Product identification: RING SCSI/);
  });

  it('sg_readcap -l reports the capacity', async () => {
    const { stdout } = await run('sg_readcap', ['-l', target.disk]);
    expect(stdout).toMatch(new RegExp(`Last LBA=${BLOCKS - 1} `));
    expect(stdout).toMatch(/Logical block length=512 bytes/);
  });

  it('O_DIRECT dd write, read back and compare (4 MiB)', () => ddRoundTrip(target));

  describe('conformance through sg_raw', () => {
    for (const testCase of ringConformanceCases) {
      it(testCase.name, () => testCase.run(sgRawDriver(target)));
    }
  });
});
