import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { LogicalUnit, MemoryBackend, ScsiStatus, ascText, decodeSense } from './index.js';

const readmePath = fileURLToPath(new URL('../README.md', import.meta.url));

/** The README example, run as written (its import line points at the package). */
describe('README example', () => {
  it('runs and prints what its comments say', async () => {
    const logs: unknown[][] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
      logs.push(args);
    });
    try {
      // #region readme
      const unit = new LogicalUnit({
        backend: new MemoryBackend({ blockSize: 512, blockCount: 2048 }), // 1 MiB, sparse
        config: { vendor: 'ACME', product: 'Demo disk' },
        powerOnUnitAttention: false,
      });

      // WRITE(10) one block at LBA 7, then READ(10) it back.
      const block = new Uint8Array(512).fill(0xab);
      await unit.execute({ cdb: Uint8Array.of(0x2a, 0, 0, 0, 0, 7, 0, 0, 1, 0), dataOut: block });
      const read = await unit.execute({
        cdb: Uint8Array.of(0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0),
        dataInLength: 512,
      });
      console.log(read.status === ScsiStatus.GOOD, read.dataIn?.[0]); // true 171

      // Errors are SCSI answers (status + sense), never exceptions.
      const bad = await unit.execute({ cdb: Uint8Array.of(0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0) });
      const sense = decodeSense(bad.sense!);
      console.log(bad.status, ascText(sense.asc, sense.ascq)); // 2 LOGICAL BLOCK ADDRESS OUT OF RANGE

      // Add a vendor-specific command: dispatched, validated against its usage
      // mask and listed by REPORT SUPPORTED OPERATION CODES like the built-ins.
      unit.override({
        opcode: 0xc0,
        name: 'ACME HELLO',
        cdbLength: 6,
        direction: 'in',
        usage: [0xc0, 0, 0, 0, 0xff, 0],
        decode: (cdb) => ({ allocationLength: cdb[4]! }),
        allocationLength: (fields) => fields.allocationLength,
        handler: () => new TextEncoder().encode('hello, world'),
      });

      // A middleware sees every command (logging, metrics, fault injection...).
      unit.use(async (request, next) => {
        const result = await next(request);
        if (result.status !== ScsiStatus.GOOD) console.log(`opcode ${request.cdb[0]} failed`);
        return result;
      });

      const hello = await unit.execute({ cdb: Uint8Array.of(0xc0, 0, 0, 0, 5, 0) });
      console.log(new TextDecoder().decode(hello.dataIn)); // hello
      await unit.execute({ cdb: Uint8Array.of(0xc0, 0x01, 0, 0, 5, 0) }); // opcode 192 failed (reserved bit set)
      // #endregion readme
    } finally {
      spy.mockRestore();
    }
    expect(logs).toEqual([
      [true, 171],
      [2, 'LOGICAL BLOCK ADDRESS OUT OF RANGE'],
      ['hello'],
      ['opcode 192 failed'],
    ]);
  });

  it('is the code block in packages/scsi/README.md, verbatim', () => {
    const source = readFileSync(fileURLToPath(import.meta.url), 'utf8');
    const region =
      (source.split('// #region readme\n')[1] ?? '').split('      // #endregion readme')[0] ?? '';
    const body = region
      .split('\n')
      .map((line) => line.replace(/^ {6}/, ''))
      .join('\n')
      .trimEnd();
    const readme = readFileSync(readmePath, 'utf8');
    const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    const expected = `import { LogicalUnit, MemoryBackend, ScsiStatus, ascText, decodeSense } from '@tcmu/scsi';\n\n${body}\n`;
    expect(block).toBe(expected);
  });
});
