// Worker thread: the simulated kernel of the ring and device benchmarks. Keeps `depth`
// READ(10)s (or WRITE(10)s with `write`) of `size` bytes queued, walking through `blocks`
// 512-byte blocks (default 65536), for `durationMs`; reports completions, kicks and wakeups.
import { parentPort } from 'node:worker_threads';
import { KernelSimulator } from '../dist/testing.js';

let sim;
const rw10 = (opcode, lba, blocks) =>
  Uint8Array.of(
    opcode,
    0,
    lba >>> 24,
    (lba >>> 16) & 0xff,
    (lba >>> 8) & 0xff,
    lba & 0xff,
    0,
    blocks >>> 8,
    blocks & 0xff,
    0,
  );

parentPort.on('message', async (message) => {
  if (message.type === 'setup') {
    sim = new KernelSimulator({ cmdrSize: (1 << 20) - 128, dataSize: 64 << 20, discardDataIn: true });
    parentPort.postMessage({ type: 'ready', ...sim.ringOptions() });
  } else if (message.type === 'run') {
    const { size, depth, durationMs, write = false, blocks: span = 65536 } = message;
    const blocks = Math.max(1, size / 512);
    const payload = new Uint8Array(size).fill(0x6b);
    let lba = 0;
    let completed = 0;
    let failed = 0;
    const kicksBefore = sim.kicks;
    const notificationsBefore = sim.notifications;
    const start = performance.now();
    const end = start + durationMs;
    await new Promise((resolve) => {
      let outstanding = 0;
      const issue = () => {
        outstanding++;
        lba = (lba + blocks) % (span - blocks);
        const request = write
          ? { cdb: rw10(0x2a, lba, blocks), dataOut: payload }
          : { cdb: rw10(0x28, lba, blocks), dataInLength: size };
        sim.submit(request).then((result) => {
          outstanding--;
          if (result.status === 0) completed++;
          else failed++;
          if (performance.now() < end) issue();
          else if (outstanding === 0) resolve();
        }, resolve);
      };
      for (let i = 0; i < depth; i++) issue();
    });
    const seconds = (performance.now() - start) / 1000;
    parentPort.postMessage({
      type: 'result',
      completed,
      failed,
      seconds,
      kicks: sim.kicks - kicksBefore,
      notifications: sim.notifications - notificationsBefore,
    });
  } else if (message.type === 'teardown') {
    await sim.close();
    parentPort.postMessage({ type: 'closed' });
  }
});
