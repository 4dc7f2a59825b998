/**
 * Fuzz through the real kernel (issue 9): random CDBs sent with SG_IO (./sg_io.py) to a
 * tcm_loop disk that this process serves, so every one crosses sd/sg, LIO's core
 * (target_core_transport.c, passthrough_parse_cdb) and the TCMU ring before our emulation.
 * Nothing may hang (the ioctl's own timeout or the watchdog here), every answer is a SAM
 * status with decodable sense, and the disk still reads back what is written afterwards.
 *
 *   pnpm fuzz:kernel [--cdbs N] [--seed S]     (boots the VM; default 10,000 CDBs)
 *
 * tests/kernel/fuzz.kernel.test.ts runs a smaller count in `pnpm test:kernel`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { decodeSense, ScsiStatus } from '@tcmu/scsi';
import { Random, randomCdb } from './random.js';

const SG_IO = join(dirname(fileURLToPath(import.meta.url)), 'sg_io.py');
/** SG_IO's own timeout per command; the midlayer then aborts it (a TMR to our device). */
const COMMAND_TIMEOUT_MS = 20_000;
/** host_status DID_TIME_OUT (include/scsi/scsi_status.h). */
const DID_TIME_OUT = 0x03;
const SAM = new Set<number>(Object.values(ScsiStatus));

export interface SgAnswer {
  readonly errno?: number;
  readonly status: number;
  readonly hostStatus: number;
  readonly driverStatus: number;
  readonly durationMs: number;
  readonly sense: Uint8Array;
}

/** One python process sending CDBs in order; answers come back asynchronously. */
export class SgSession {
  readonly #child;
  readonly #lines: AsyncIterator<string>;
  #stderr = '';

  constructor(disk: string) {
    this.#child = spawn('python3', [SG_IO, disk], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stderr.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString();
    });
    this.#lines = createInterface({ input: this.#child.stdout })[Symbol.asyncIterator]();
  }

  async send(cdb: Uint8Array, direction: 'none' | 'in' | 'out', length: number): Promise<SgAnswer> {
    this.#child.stdin.write(
      `${direction} ${length} ${Buffer.from(cdb).toString('hex')} ${COMMAND_TIMEOUT_MS}\n`,
    );
    let timer: NodeJS.Timeout | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${COMMAND_TIMEOUT_MS / 1000 + 30} s`)),
        COMMAND_TIMEOUT_MS + 30_000,
      );
    });
    try {
      const line = await Promise.race([this.#lines.next(), watchdog]);
      if (line.done) throw new Error(`sg_io.py exited: ${this.#stderr.trim()}`);
      const [kind, ...fields] = line.value.split(' ');
      if (kind === 'errno')
        return {
          errno: Number(fields[0]),
          status: 0,
          hostStatus: 0,
          driverStatus: 0,
          durationMs: 0,
          sense: new Uint8Array(),
        };
      const [status, host, driver, , duration, sense] = fields;
      return {
        status: Number(status),
        hostStatus: Number(host),
        driverStatus: Number(driver),
        durationMs: Number(duration),
        sense: sense === '-' ? new Uint8Array() : Uint8Array.from(Buffer.from(sense!, 'hex')),
      };
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.#child.stdin.end();
  }
}

export interface KernelFuzzCounts {
  commands: number;
  good: number;
  checkCondition: number;
  /** Other SAM statuses (RESERVATION CONFLICT from LIO's PR code, CONDITION MET...). */
  otherStatus: number;
  /** The ioctl refused the request itself (e.g. a CDB shorter than 6 bytes). */
  refusedByKernel: number;
  /** A host_status other than OK (the midlayer or tcm_loop failed the command). */
  hostErrors: number;
  hangs: number;
  slowestMs: number;
}

/** Throws on the first violation, naming the CDB and the seed that replay it. */
export async function fuzzKernel(disk: string, cdbs: number, seed: number): Promise<KernelFuzzCounts> {
  const random = new Random(seed);
  const counts: KernelFuzzCounts = {
    commands: 0,
    good: 0,
    checkCondition: 0,
    otherStatus: 0,
    refusedByKernel: 0,
    hostErrors: 0,
    hangs: 0,
    slowestMs: 0,
  };
  const session = new SgSession(disk);
  try {
    for (let i = 0; i < cdbs; i++) {
      const { cdb, entry } = randomCdb(random, 32);
      // The direction the command wants, and now and then another one.
      const wanted = entry?.direction === 'bidi' ? 'out' : (entry?.direction ?? 'in');
      const direction = random.below(6) === 0 ? (['none', 'in', 'out'] as const)[random.below(3)]! : wanted;
      const length = direction === 'none' ? 0 : [0, 8, 512, 4096, random.below(65_536)][random.below(5)]!;
      const where = `CDB ${Buffer.from(cdb).toString('hex')} (${direction} ${length}; #${i}, seed ${seed})`;
      const answer = await session.send(cdb, direction, length).catch((error: Error) => {
        throw new Error(`${where}: ${error.message}`);
      });
      counts.commands++;
      if (answer.errno !== undefined) {
        counts.refusedByKernel++;
        continue;
      }
      counts.slowestMs = Math.max(counts.slowestMs, answer.durationMs);
      if (answer.hostStatus === DID_TIME_OUT || answer.durationMs >= COMMAND_TIMEOUT_MS) {
        counts.hangs++;
        throw new Error(`${where}: timed out after ${answer.durationMs} ms`);
      }
      if (answer.hostStatus !== 0) {
        counts.hostErrors++;
        continue;
      }
      if (!SAM.has(answer.status)) throw new Error(`${where}: status ${answer.status} is not a SAM status`);
      if (answer.status === ScsiStatus.CHECK_CONDITION) {
        counts.checkCondition++;
        const key = answer.sense.length > 0 ? decodeSense(answer.sense).key : 0;
        if (key === 0) throw new Error(`${where}: CHECK CONDITION without a sense key`);
      } else if (answer.status === ScsiStatus.GOOD) counts.good++;
      else counts.otherStatus++;
    }
  } finally {
    session.close();
  }
  return counts;
}

/**
 * After the fuzz: START UNIT (a random STOP may have stopped it), TEST UNIT READY until
 * the pending attentions are taken, then 1 MiB written and read back through the block device.
 */
export async function checkDiskAnswers(disk: string): Promise<void> {
  const session = new SgSession(disk);
  try {
    await session.send(Uint8Array.of(0x1b, 0, 0, 0, 1, 0), 'none', 0);
    let ready = false;
    for (let i = 0; i < 8 && !ready; i++) {
      ready = (await session.send(new Uint8Array(6), 'none', 0)).status === ScsiStatus.GOOD;
    }
    if (!ready) throw new Error('TEST UNIT READY never answered GOOD after the fuzz');
  } finally {
    session.close();
  }
  const pattern = randomBytes(1 << 20);
  const handle = await open(disk, 'r+');
  try {
    await handle.write(pattern, 0, pattern.length, 0);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  // A fresh open after the write: O_DIRECT would need aligned buffers, so drop the page
  // cache for this disk instead (BLKFLSBUF through blockdev).
  await new Promise<void>((resolve, reject) =>
    spawn('blockdev', ['--flushbufs', disk], { stdio: 'inherit' }).on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`blockdev --flushbufs exited ${code}`)),
    ),
  );
  const back = Buffer.alloc(pattern.length);
  const reader = await open(disk, 'r');
  try {
    await reader.read(back, 0, back.length, 0);
  } finally {
    await reader.close();
  }
  if (!back.equals(pattern)) throw new Error('the disk did not read back what was written after the fuzz');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { cdbs: { type: 'string', default: '10000' }, seed: { type: 'string', default: '1' } },
  });
  const { openDevice } = await import('@tcmu/device');
  const { MemoryBackend } = await import('@tcmu/scsi');
  const device = await openDevice({
    name: 'fuzz',
    backend: new MemoryBackend({ blockSize: 512, blockCount: 32_768 }),
  });
  try {
    const started = performance.now();
    const counts = await fuzzKernel(device.diskPath!, Number(values.cdbs), Number(values.seed));
    const seconds = (performance.now() - started) / 1000;
    await checkDiskAnswers(device.diskPath!);
    console.log(
      `fuzz through the kernel: ${JSON.stringify(counts)} in ${seconds.toFixed(0)} s; the disk answers afterwards`,
    );
    console.log(`device: ${JSON.stringify(device.stats())}`);
  } finally {
    await device.close({ drainTimeoutMs: 10_000 });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: Error) => {
    console.error(`fuzz:kernel: ${error.message}`);
    process.exit(1);
  });
}
