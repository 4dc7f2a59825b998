import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeKernel } from '@tcmu/configfs/testing';
import { TcmuRing } from '@tcmu/ring';
import {
  KernelSimulator,
  type SimulatedRequest,
  type SimulatedResult,
  type SimulatorOptions,
} from '@tcmu/ring/testing';
import type { Device } from '../device.js';
import type { DevicePlatform, RingOpenOptions, UioRef } from '../platform.js';
import { systemPlatform } from '../system.js';

/**
 * The whole device stack on a fake kernel: @tcmu/configfs's FakeKernel plays
 * configfs/sysfs, and each UIO device the fake creates is served by a
 * @tcmu/ring KernelSimulator (the real addon, on a memfd).
 */
export interface Harness {
  readonly kernel: FakeKernel;
  readonly platform: DevicePlatform;
  /** The same platform as another process of ours (its ownership markers name `ownerPid`). */
  platformAs(ownerPid: number): DevicePlatform;
  /** A temp directory for device nodes. */
  readonly nodeDir: string;
  /** The simulator behind a device's ring. */
  simulator(device: Device): KernelSimulator;
  /** Submit a command as the kernel would. */
  submit(device: Device, request: SimulatedRequest): Promise<SimulatedResult>;
  dispose(): Promise<void>;
}

/** Options of createHarness. */
export interface HarnessOptions {
  /** Options of every KernelSimulator (the data area defaults to 4 MiB here). */
  readonly simulator?: SimulatorOptions;
  /** Close each simulator with its ring (long runs that must not accumulate fds). */
  readonly closeSimulatorWithRing?: boolean;
}

/**
 * A fake kernel for openDevice(): pass `harness.platform` as its `platform`, send commands
 * with `harness.submit(device, { cdb, ... })`, and `dispose()` after closing the devices.
 */
export async function createHarness(options: HarnessOptions = {}): Promise<Harness> {
  const kernel = await FakeKernel.create();
  const nodeDir = await mkdtemp(join(tmpdir(), 'tcmu-device-nodes-'));
  const simulators = new Map<string, KernelSimulator>();
  const everySimulator: KernelSimulator[] = [];
  const platformAs = (ownerPid?: number) =>
    systemPlatform({
      fs: kernel,
      roots: kernel.roots,
      uioTimeoutMs: 500,
      diskTimeoutMs: 500,
      ...(ownerPid === undefined ? {} : { ownerPid }),
      openRing,
    });
  const openRing = (uio: UioRef, ring: RingOpenOptions): TcmuRing => {
    const simulator = new KernelSimulator({ dataSize: 4 << 20, ...options.simulator });
    simulators.set(uio.path, simulator);
    everySimulator.push(simulator);
    try {
      // action/free_kept_buf of the fake kernel is the simulator's.
      const opened = TcmuRing.open({
        ...simulator.ringOptions(ring),
        ...ring,
        freeKeptBuffer: async (id) => simulator.freeKeptBuffer(id),
      });
      if (options.closeSimulatorWithRing) {
        opened.once('close', () => {
          everySimulator.splice(everySimulator.indexOf(simulator), 1);
          if (simulators.get(uio.path) === simulator) simulators.delete(uio.path);
          void simulator.close();
        });
      }
      return opened;
    } catch (error) {
      void simulator.close();
      throw error;
    }
  };
  const platform = platformAs();
  // action/block_dev and action/reset_ring reach the simulator behind that UIO device, as in the kernel.
  kernel.onAction((uioPath, action, value) => {
    const simulator = simulators.get(uioPath);
    if (action === 'block_dev') simulator?.blockDevice(value === '1');
    else if (action === 'reset_ring') simulator?.resetRing(value === '2' ? 2 : 1);
  });
  const simulator = (device: Device): KernelSimulator => {
    const found = device.uioPath && simulators.get(device.uioPath);
    if (!found) throw new Error(`no simulator for ${device.name}`);
    return found;
  };
  return {
    kernel,
    platform,
    platformAs,
    nodeDir,
    simulator,
    submit: (device, request) => simulator(device).submit(request),
    async dispose() {
      for (const sim of everySimulator) await sim.close();
      await kernel.dispose();
      await rm(nodeDir, { recursive: true, force: true });
    },
  };
}

/** A CDB helper: READ(10)/WRITE(10). */
export const rw10 = (opcode: 0x28 | 0x2a, lba: number, blocks: number): Uint8Array =>
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
