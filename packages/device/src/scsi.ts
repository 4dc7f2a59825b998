import {
  CopyManager,
  type DataDirection,
  defaultOpcodeTable,
  LogicalUnit,
  type OpcodeTable,
  type TransportProtocol,
} from '@tcmu/scsi';
import type { Emulation } from './device.js';
import { composeHandler, type DeviceLogger, type Handler, type HandlerMiddleware } from './handler.js';
import type { DeviceIdentity } from './identity.js';
import type { UnitOptions } from './options.js';

/** Every unit this process serves with third-party copy on: what one EXTENDED COPY may reach. */
export const servedUnits = new CopyManager();

/** The default handler as a function: the @tcmu/scsi emulation of `unit` (never rejects). */
export function scsiHandler(unit: LogicalUnit): Handler {
  return (cmd) => unit.execute(cmd);
}

/** The direction of a CDB in an opcode table (for answers that do not say it). */
export function directionFrom(table: OpcodeTable): (cdb: Uint8Array) => DataDirection | undefined {
  return (cdb) => {
    const slot = table.resolve(cdb);
    return 'entry' in slot ? slot.entry.direction : undefined;
  };
}

/** The kernel rounds hw_max_sectors down to whole pages (se_dev_align_max_sectors). */
export function alignMaxSectors(sectors: number, blockSize: number): number {
  const perPage = Math.max(1, 4096 / blockSize);
  return Math.max(perPage, Math.floor(sectors / perPage) * perPage);
}

export interface EmulationOptions {
  readonly backend: import('@tcmu/scsi').BlockBackend | undefined;
  readonly handler: Handler | undefined;
  readonly middleware: readonly HandlerMiddleware[];
  readonly identity: DeviceIdentity;
  readonly unit: UnitOptions | undefined;
  readonly logger: DeviceLogger;
  readonly blockSize: number;
  readonly hwMaxSectors: number;
  /** The fabrics the device is exported on (standard INQUIRY names the transport when there is one). */
  readonly fabrics: readonly ('loopback' | 'iscsi')[];
}

/**
 * The transport standard INQUIRY can claim: the one fabric's, none with several (a unit
 * behind TCMU cannot tell which one a command came through). tcm_loop identifies as SAS
 * for its naa. WWNs (tcm_loop_make_scsi_hba()).
 */
export function transportOf(fabrics: readonly ('loopback' | 'iscsi')[]): TransportProtocol | undefined {
  const kinds = new Set(fabrics);
  if (kinds.size !== 1) return undefined;
  return kinds.has('iscsi') ? 'iscsi' : 'sas';
}

/**
 * The LogicalUnit over the backend (if any) and, when commands cannot go
 * straight to it (a custom handler, middleware), the handler chain.
 */
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
        transportProtocol: transportOf(options.fabrics),
        ...(options.unit?.vendor !== undefined ? { vendor: options.unit.vendor } : {}),
        ...(options.unit?.product !== undefined ? { product: options.unit.product } : {}),
        ...(options.unit?.revision !== undefined ? { revision: options.unit.revision } : {}),
        extendedCopy: options.unit?.thirdPartyCopy ?? true,
      },
      ...(options.unit?.writeCache !== undefined ? { writeCacheEnabled: options.unit.writeCache } : {}),
      // LIO reports POWER ON / RESET itself for TCMU devices (target_core_device.c).
      powerOnUnitAttention: false,
    });
  }
  const final = options.handler ?? (unit ? scsiHandler(unit) : undefined);
  if (!final) throw new TypeError('a backend or a handler is required');
  const chained = options.handler !== undefined || options.middleware.length > 0;
  return {
    unit,
    handler: chained ? composeHandler(options.middleware, final) : undefined,
    directionOf: directionFrom(unit ? unit.table : defaultOpcodeTable()),
  };
}
