/**
 * A gateway in a process of its own, for gateways.test.ts: opens an RBD image with its
 * exclusive lock (as `tcmufile serve rbd:` does), writes block 0 once, prints "ready",
 * then answers one line per stdin line: "write N" writes block 0 filled with N and prints
 * "ok" or "failed CODE"; "close" closes and exits. A test freezes it with SIGSTOP to play a
 * gateway that hangs or is cut off.
 */
import { createInterface } from 'node:readline';
import { RbdBackend, type RbdOpenOptions } from '../index.js';

const options = JSON.parse(process.argv[2]!) as RbdOpenOptions;
const backend = await RbdBackend.open({ ...options, exclusive: true });
await backend.write(0, new Uint8Array(backend.blockSize).fill(0xa1), { fua: true });
process.stdout.write('ready\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [verb, value] = line.split(' ');
  if (verb === 'close') break;
  const answer = await backend
    .write(0, new Uint8Array(backend.blockSize).fill(Number(value)), { fua: true })
    .then(
      () => 'ok',
      (error: { cause?: { code?: string } }) => `failed ${error.cause?.code ?? String(error)}`,
    );
  process.stdout.write(`${answer}\n`);
}
await backend.close().catch(() => {});
process.exit(0);
