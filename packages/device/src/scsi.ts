import {
  type BlockBackend,
  type CommandRequest,
  defaultOpcodeTable,
  LogicalUnit,
  type OpcodeTable,
} from '@tcmu/scsi';
import type { Direction } from './command.js';
import type { Emulation } from './device.js';
import type { DeviceCommand, DeviceLogger, Handler } from './handler.js';
import type { DeviceIdentity } from './identity.js';
import type { UnitOptions } from './options.js';

/**
 * The request the unit executes for a device command. The signal is read
 * only when the command waits (an asynchronous backend, a contended range
 * lock), so most commands never build an AbortController; `aborted` is the
 * cheap poll the executor uses instead.
 */
class UnitRequest implements CommandRequest {
  readonly cdb: Uint8Array;
  readonly dataOut: Uint8Array;
  readonly dataInLength: number;
  readonly nexus: string;
  readonly #command: DeviceCommand;

  constructor(command: DeviceCommand) {
    this.#command = command;
    this.cdb = command.cdb;
    this.dataOut = command.dataOut;
    this.dataInLength = command.dataInLength;
    this.nexus = command.nexus;
  }

  get signal(): AbortSignal {
    return this.#command.signal;
  }

  get aborted(): boolean {
    return this.#command.aborted ?? this.#command.signal.aborted;
  }
}

/** The default handler: the @tcmu/scsi emulation of `unit` (never rejects). */
export function scsiHandler(unit: LogicalUnit): Handler {
  return (cmd) => unit.execute(new UnitRequest(cmd));
}

/** Reads the direction of a CDB from an opcode table (the one dispatch uses). */
export function directionFrom(table: OpcodeTable): (cdb: Uint8Array) => Direction {
  return (cdb) => {
    const slot = table.resolve(cdb);
    return 'entry' in slot ? slot.entry.direction : 'unknown';
  };
}

/** The kernel rounds hw_max_sectors down to whole pages (se_dev_align_max_sectors). */
export function alignMaxSectors(sectors: number, blockSize: number): number {
  const perPage = Math.max(1, 4096 / blockSize);
  return Math.max(perPage, Math.floor(sectors / perPage) * perPage);
}

export interface EmulationOptions {
  readonly backend: BlockBackend | undefined;
  readonly handler: Handler | undefined;
  readonly identity: DeviceIdentity;
  readonly unit: UnitOptions | undefined;
  readonly logger: DeviceLogger;
  readonly blockSize: number;
  readonly hwMaxSectors: number;
}

/** The LogicalUnit over the backend (if any), the handler to run and the direction lookup. */
export function createEmulation(options: EmulationOptions): Emulation & { unit: LogicalUnit | undefined } {
  const { backend } = options;
  let unit: LogicalUnit | undefined;
  if (backend) {
    const maxTransferBlocks = alignMaxSectors(options.hwMaxSectors, options.blockSize);
    unit = new LogicalUnit({
      backend,
      logger: options.logger,
      config: {
        serial: options.identity.serial,
        naa: options.identity.naa,
        maxTransferBlocks,
        optimalTransferBlocks: maxTransferBlocks,
        ...(options.unit?.vendor !== undefined ? { vendor: options.unit.vendor } : {}),
        ...(options.unit?.product !== undefined ? { product: options.unit.product } : {}),
        ...(options.unit?.revision !== undefined ? { revision: options.unit.revision } : {}),
      },
      ...(options.unit?.writeCache !== undefined ? { writeCacheEnabled: options.unit.writeCache } : {}),
      // LIO reports POWER ON / RESET itself for TCMU devices (target_core_device.c).
      powerOnUnitAttention: false,
    });
  }
  const handler = options.handler ?? (unit ? scsiHandler(unit) : undefined);
  if (!handler) throw new TypeError('a backend or a handler is required');
  return { unit, handler, directionOf: directionFrom(unit ? unit.table : defaultOpcodeTable()) };
}
