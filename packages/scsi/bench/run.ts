/**
 * @tcmu/scsi hot-path benchmark: commands per second through `unit.execute`
 * on a MemoryBackend, each beside a baseline in the same run (a bare loop that
 * does only the byte copy the command implies) and the ratio of the two.
 * Bounded: about 1 s per measurement, 8 measurements.
 */
import { LogicalUnit, MemoryBackend } from '../src/index.js';

const SECONDS = Number(process.env.SCSI_BENCH_SECONDS ?? 1);

/**
 * Commands per second of CPU time this process used (user + system), which is
 * what one core delivers even when other processes share the machine.
 */
async function measure(body: () => unknown | Promise<unknown>): Promise<Rate> {
  // Warm up so the JIT has seen the path.
  for (let i = 0; i < 5000; i++) await body();
  const deadline = performance.now() + SECONDS * 1000;
  let count = 0;
  const cpu = process.cpuUsage();
  while (performance.now() < deadline) {
    for (let i = 0; i < 1000; i++) await body();
    count += 1000;
  }
  const used = process.cpuUsage(cpu);
  const wallSeconds = (performance.now() - deadline) / 1000 + SECONDS;
  return {
    cpu: Math.round(count / ((used.user + used.system) / 1e6)),
    wall: Math.round(count / wallSeconds),
  };
}

interface Rate {
  /** Commands per CPU-second of this process. */
  readonly cpu: number;
  /** Commands per wall-clock second (lower when other processes share the cores). */
  readonly wall: number;
}

const fmt = (n: number) => n.toLocaleString('en-US').padStart(12);

async function main() {
  const blockSize = 512;
  const backend = new MemoryBackend({ blockSize, blockCount: 1 << 21 }); // 1 GiB, sparse
  const unit = new LogicalUnit({ backend, powerOnUnitAttention: false });
  const block4k = new Uint8Array(4096).fill(0x5a);
  // Touch the read range so reads copy real chunks, not zero fill.
  backend.write(0, new Uint8Array(1 << 20).fill(1), { fua: false });

  const tur = { cdb: new Uint8Array(6) };
  let lba = 0;
  const read10 = new Uint8Array([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]);
  const write10 = new Uint8Array([0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0]);
  const nextLba = (cdb: Uint8Array) => {
    lba = (lba + 8) & 0x7ff; // within the first MiB
    cdb[4] = lba >>> 8;
    cdb[5] = lba & 0xff;
    return cdb;
  };

  const sink = new Uint8Array(4096);
  const rows: Array<[string, Rate, Rate]> = [];

  // TEST UNIT READY: nothing to copy; the baseline is the bare awaited loop.
  rows.push([
    'TEST UNIT READY',
    await measure(() => unit.execute(tur)),
    await measure(() => Promise.resolve()),
  ]);
  // 4 KiB READ(10) / WRITE(10): the baseline is the 4 KiB copy alone.
  rows.push([
    '4 KiB READ(10)',
    await measure(() => unit.execute({ cdb: nextLba(read10), dataInLength: 4096 })),
    await measure(() => {
      sink.set(block4k);
      return Promise.resolve();
    }),
  ]);
  // The same READ filling the caller's memory (CommandRequest.dataInBuffer, e.g. a ring iovec).
  const dataInBuffer = new Uint8Array(4096);
  rows.push([
    '4 KiB READ(10) in place',
    await measure(() => unit.execute({ cdb: nextLba(read10), dataInLength: 4096, dataInBuffer })),
    await measure(() => {
      sink.set(block4k);
      return Promise.resolve();
    }),
  ]);
  rows.push([
    '4 KiB WRITE(10)',
    await measure(() => unit.execute({ cdb: nextLba(write10), dataOut: block4k })),
    await measure(() => {
      sink.set(block4k);
      return Promise.resolve();
    }),
  ]);

  console.log(
    `@tcmu/scsi benchmark (node ${process.version}, ${SECONDS}s per figure, sequential await, per CPU-second of this process)`,
  );
  console.log(
    `${'command'.padEnd(24)}${'commands/s'.padStart(12)}${'baseline/s'.padStart(14)}  ratio  ${'(wall: commands/s'.padStart(20)}  baseline/s)`,
  );
  for (const [name, ours, base] of rows) {
    console.log(
      `${name.padEnd(24)}${fmt(ours.cpu)}  ${fmt(base.cpu)}  ${(ours.cpu / base.cpu).toFixed(2)}   ${fmt(ours.wall)}  ${fmt(base.wall)}`,
    );
  }
  const load = (await import('node:os')).loadavg()[0]!.toFixed(1);
  console.log(`load average during the run: ${load}`);
}

await main();
