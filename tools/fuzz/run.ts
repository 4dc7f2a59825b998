/**
 * Fuzz at scale (issue 9), a job of its own: `pnpm fuzz [--cdbs N] [--ring N] [--seed S]`.
 *
 * 1. N random CDBs (default 1,000,000; see randomCdb: raw bytes and implemented commands) through
 *    `LogicalUnit.execute` over a MemoryBackend: never a throw or a hang, every status
 *    from the SAM set, CHECK CONDITION with sense that decodes (key > 0), Data-In within
 *    the allocation and a consistent residual.
 * 2. N random raw ring entries (default 20,000) published by the ring simulator to a
 *    TcmuRing: lengths, ops, ids, iov counts, CDB offsets and cmd_head values at random.
 *    Every one is served or refused as CorruptRingError (then the ring is reset and
 *    recovered); the process never crashes and the ring serves real commands afterwards.
 * Prints the counts; exits non-zero on the first violation.
 */
import { parseArgs } from 'node:util';
import { ABI, CorruptRingError, TcmuRing } from '@tcmu/ring';
import { KernelSimulator } from '@tcmu/ring/testing';
import { decodeSense, LogicalUnit, MemoryBackend, ScsiStatus } from '@tcmu/scsi';
import { Random, randomCdb } from './random.js';

const { values } = parseArgs({
  options: {
    cdbs: { type: 'string', default: '1000000' },
    ring: { type: 'string', default: '20000' },
    seed: { type: 'string', default: '1' },
  },
});
const CDBS = Number(values.cdbs);
const RING = Number(values.ring);
const random = new Random(Number(values.seed));
const below = (n: number) => random.below(n);
const bytes = (n: number) => random.bytes(n);

function fail(message: string): never {
  console.error(`fuzz: ${message} (seed ${values.seed})`);
  process.exit(1);
}

const SAM = new Set<number>(Object.values(ScsiStatus));

async function fuzzCdbs(): Promise<Record<string, number>> {
  const counts = { commands: 0, good: 0, checkCondition: 0, other: 0, throws: 0 };
  let unit = new LogicalUnit({ backend: new MemoryBackend({ blockSize: 512, blockCount: 256 }) });
  const dataOut = bytes(8192);
  for (let i = 0; i < CDBS; i++) {
    if (i % 10_000 === 0)
      unit = new LogicalUnit({
        backend: new MemoryBackend({ blockSize: 512, blockCount: 256 }),
        descriptorSense: below(2) === 1,
      });
    const { cdb } = randomCdb(random);
    const dataInLength = below(3) === 0 ? undefined : below(70_000);
    let result: Awaited<ReturnType<LogicalUnit['execute']>>;
    try {
      const answer = unit.execute({
        cdb,
        dataOut: dataOut.subarray(0, below(8193)),
        dataInLength,
        nexus: below(3) === 0 ? 'b' : 'a',
      });
      result =
        answer instanceof Promise
          ? await Promise.race([
              answer,
              new Promise<never>((_, r) =>
                setTimeout(() => r(new Error('no answer within 5 s')), 5000).unref(),
              ),
            ])
          : answer;
    } catch (error) {
      counts.throws++;
      fail(`CDB ${Buffer.from(cdb).toString('hex')} threw: ${(error as Error).message}`);
    }
    counts.commands++;
    if (!SAM.has(result.status)) fail(`status ${result.status} is not a SAM status`);
    if (result.status === ScsiStatus.CHECK_CONDITION) {
      counts.checkCondition++;
      if (!result.sense || result.sense.length > 96 || decodeSense(result.sense).key === 0)
        fail(`bad sense for ${Buffer.from(cdb).toString('hex')}`);
    } else if (result.status === ScsiStatus.GOOD) counts.good++;
    else counts.other++;
    if (dataInLength !== undefined && (result.dataIn?.length ?? 0) > dataInLength)
      fail('Data-In beyond the allocation');
    if (result.residual < 0) fail('negative residual');
  }
  return counts;
}

async function fuzzRing(): Promise<Record<string, number>> {
  const counts = { entries: 0, served: 0, corrupt: 0, recovered: 0 };
  const sim = new KernelSimulator({ cmdrSize: 64 * 1024 - ABI.mailbox.size, dataSize: 1 << 20 });
  const ring = TcmuRing.open(sim.ringOptions());
  let corrupt = 0;
  ring.on('error', (error) => {
    if (!(error instanceof CorruptRingError))
      fail(`ring error that is not CorruptRingError: ${error.message}`);
    corrupt++;
  });
  ring.on('command', (command) => {
    counts.served++;
    ring.complete(command, 0);
  });
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  for (let i = 0; i < RING; i++) {
    const length = [8, 16, 24, 48, 64, 128, 4096][below(7)]! + (below(4) === 0 ? below(8) : 0);
    const entry = bytes(Math.min(length, 512));
    const view = new DataView(entry.buffer);
    view.setUint32(0, (length & ~7) | below(4), true); // len_op: a length (often past cmd_head) and op 0..3
    if (entry.length >= 16 && below(2) === 0) view.setUint32(ABI.req.iovCnt, below(4), true);
    const before = corrupt;
    if (below(20) === 0) sim.setHead(below(1 << 20));
    else sim.injectRaw(entry, entry.length & ~7);
    counts.entries++;
    await settle();
    await settle();
    if (corrupt > before || ring.inFlight > 0 || sim.broken) {
      counts.corrupt += corrupt > before ? 1 : 0;
      sim.resetRing(2);
      try {
        ring.recover();
      } catch (error) {
        fail(`recover refused: ${(error as Error).message}`);
      }
      counts.recovered++;
    }
  }
  // Still serving real commands.
  for (let i = 0; i < 100; i++) {
    const result = await sim.submit({ cdb: Uint8Array.of(0x00, 0, 0, 0, 0, 0) });
    if (result.status !== 0) fail(`TEST UNIT READY after the fuzz got status ${result.status}`);
  }
  await ring.close();
  await sim.close();
  return counts;
}

const started = performance.now();
const cdbCounts = await fuzzCdbs();
const cdbSeconds = (performance.now() - started) / 1000;
console.log(`fuzz CDBs: ${JSON.stringify(cdbCounts)} in ${cdbSeconds.toFixed(1)} s`);
const ringStarted = performance.now();
const ringCounts = await fuzzRing();
console.log(
  `fuzz ring entries: ${JSON.stringify(ringCounts)} in ${((performance.now() - ringStarted) / 1000).toFixed(1)} s`,
);
