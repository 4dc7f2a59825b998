/**
 * An image file served read-only: the initiator sees a write-protected disk (writes end in
 * DATA PROTECT / WRITE PROTECTED) and the file is opened O_RDONLY with a shared lock, so
 * several read-only servers may share an image but none can while it is being written.
 *
 *   sudo node --import tsx examples/read-only-image.ts IMAGE [NAME]
 */
import { realpath } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import {
  type Device,
  handleSignals,
  type OpenDeviceOptions,
  openDevice,
  openFileBackend,
} from '@tcmu/device';

/** Serves `image` (a multiple of 512 bytes) as `name`; tests pass `platform` (a simulated kernel). */
export async function serveImage(
  image: string,
  options: Pick<OpenDeviceOptions, 'platform'> & { name?: string } = {},
): Promise<Device> {
  const { name = 'image0', ...rest } = options;
  const backend = await openFileBackend(image, { blockSize: 512, readOnly: true });
  try {
    // `source` records the image with the backstore: a restarted server adopts the disk only for it.
    const device = await openDevice({ name, backend, source: await realpath(image), ...rest });
    device.once('close', () => void backend.close());
    return device;
  } catch (error) {
    await backend.close();
    throw error;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [image, name] = process.argv.slice(2);
  if (!image) {
    console.error('usage: read-only-image.ts IMAGE [NAME]');
    process.exit(2);
  }
  const device = await serveImage(image, name === undefined ? {} : { name });
  console.log(`serving ${image} read-only as ${device.diskPath}; Ctrl-C removes it`);
  handleSignals([device]);
}
