// Worker thread: the simulated kernel. Keeps `depth` READs of `size` bytes
// queued and counts completions for `durationMs`.
import { parentPort } from 'node:worker_threads';
import { KernelSimulator } from '../dist/testing.js';

let sim;
parentPort.on('message', async (message) => {
  if (message.type === 'setup') {
    sim = new KernelSimulator({ cmdrSize: (1 << 20) - 128, dataSize: 64 << 20, discardDataIn: true });
    parentPort.postMessage({ type: 'ready', ...sim.ringOptions() });
  } else if (message.type === 'run') {
    const { size, depth, durationMs } = message;
    const cdb = Uint8Array.of(0x28, 0, 0, 0, 0, 0, 0, (size / 512) >> 8, (size / 512) & 0xff, 0);
    const request = { cdb, dataInLength: size };
    let completed = 0;
    let failed = 0;
    const start = performance.now();
    const end = start + durationMs;
    await new Promise((resolve) => {
      let outstanding = 0;
      const issue = () => {
        outstanding++;
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
    parentPort.postMessage({ type: 'result', completed, failed, seconds });
  } else if (message.type === 'teardown') {
    await sim.close();
    parentPort.postMessage({ type: 'closed' });
  }
});
