/**
 * A 64 MiB RAM disk: the built-in SCSI emulation over a MemoryBackend, exported through
 * the loopback fabric as /dev/sdX. Ctrl-C (or SIGTERM) drains it and removes everything.
 *
 *   sudo node --import tsx examples/memory-disk.ts    (modprobe target_core_user tcm_loop first)
 */
import { fileURLToPath } from 'node:url';
import { type Device, handleSignals, MemoryBackend, type OpenDeviceOptions, openDevice } from '@tcmu/device';

/** Opens the disk. Tests pass `platform` (a simulated kernel); a real run passes nothing. */
export function openMemoryDisk(options: Pick<OpenDeviceOptions, 'platform'> = {}): Promise<Device> {
  return openDevice({
    name: 'ramdisk0',
    backend: new MemoryBackend({ blockSize: 4096, blockCount: 16384 }), // memory is taken as blocks are written
    ...options,
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const disk = await openMemoryDisk();
  console.log(`serving ${disk.diskPath} (${disk.name}); Ctrl-C removes it`);
  handleSignals([disk]);
}
