import { be16, putAscii, putBe16, putBe32, putBe64 } from '../core/bytes.js';
import type { CommandContext, OpcodeEntry, TransportProtocol } from '../core/command.js';
import { invalidCdbField } from '../core/errors.js';
import type { LogicalUnit } from '../core/unit.js';
import { usageFor } from '../opcodes/table.js';

/** INQUIRY (SPC-5 6.7). */
export interface InquiryFields {
  readonly evpd: boolean;
  readonly pageCode: number;
  readonly allocationLength: number;
}

export const INQUIRY = 0x12;

/** VPD pages this unit reports, in VPD 0x00 order. */
export const VpdPage = {
  SUPPORTED_PAGES: 0x00,
  UNIT_SERIAL_NUMBER: 0x80,
  DEVICE_IDENTIFICATION: 0x83,
  EXTENDED_INQUIRY: 0x86,
  BLOCK_LIMITS: 0xb0,
  BLOCK_DEVICE_CHARACTERISTICS: 0xb1,
  LOGICAL_BLOCK_PROVISIONING: 0xb2,
} as const;

const STANDARD_LENGTH = 96;

/**
 * SPC-5 6.7.2 (Table 148, version descriptor values; "no version claimed" codes, as the
 * target core's spc_emulate_inquiry_std() uses): architecture model, command sets, then
 * the transport, in the order SPC-5 recommends. SPC-4 matches VERSION 06h.
 */
const SAM_5 = 0x00a0;
const SPC_4 = 0x0460;
const SBC_4 = 0x0600;
const TRANSPORT_DESCRIPTORS: Record<TransportProtocol, number> = {
  fcp: 0x0a40, // FCP-4
  iscsi: 0x0960, // iSCSI
  sas: 0x0c60, // SAS-3 (what LIO's loopback fabric identifies as)
  sbp: 0x0980, // SBP-3
  srp: 0x0940, // SRP
};

export const inquiryEntry: OpcodeEntry<InquiryFields> = {
  opcode: INQUIRY,
  name: 'INQUIRY',
  cdbLength: 6,
  direction: 'in',
  usage: [INQUIRY, 0x01, 0xff, 0xff, 0xff, 0x00],
  decode(cdb) {
    const evpd = (cdb[1]! & 0x01) !== 0;
    const pageCode = cdb[2]!;
    // SPC-5 6.7.1: EVPD=0 with a non-zero PAGE CODE is an invalid field.
    if (!evpd && pageCode !== 0) throw invalidCdbField(2);
    return { evpd, pageCode, allocationLength: be16(cdb, 3) };
  },
  encode(f) {
    const cdb = new Uint8Array(6);
    cdb[0] = INQUIRY;
    cdb[1] = f.evpd ? 1 : 0;
    cdb[2] = f.pageCode;
    putBe16(cdb, 3, f.allocationLength);
    return cdb;
  },
  allocationLength: (f) => f.allocationLength,
  handler: inquiry,
  reportsNoUnitAttention: true,
  allowedDuringFormat: true,
  allowedDuringSanitize: true,
  timeouts: { nominal: 1, recommended: 5 },
};

function inquiry(ctx: CommandContext<InquiryFields>): Uint8Array {
  const unit = ctx.unit as LogicalUnit;
  if (!ctx.fields.evpd) return standardInquiry(unit);
  const build = VPD_BUILDERS.get(ctx.fields.pageCode);
  if (!build) throw invalidCdbField(2);
  return build(unit);
}

/** Standard INQUIRY data: 96 bytes, SPC-5 6.7.2. */
export function standardInquiry(unit: LogicalUnit): Uint8Array {
  const b = new Uint8Array(STANDARD_LENGTH);
  b[0] = 0x00; // peripheral qualifier 0, direct access block device
  b[1] = 0x00; // RMB=0: not removable
  b[2] = 0x06; // VERSION: SPC-4, what LIO reports and initiators' tools recognise
  b[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
  b[4] = STANDARD_LENGTH - 5;
  b[5] = offers(unit, 0x83, 0x00) ? 0x08 : 0x00; // 3PC: EXTENDED COPY is offered
  b[7] = 0x02; // CMDQUE
  putAscii(b, 8, 8, unit.config.vendor);
  putAscii(b, 16, 16, unit.config.product);
  putAscii(b, 32, 4, unit.config.revision);
  const transport = unit.config.transportProtocol;
  const descriptors = [SAM_5, SPC_4, SBC_4, ...(transport ? [TRANSPORT_DESCRIPTORS[transport]] : [])];
  for (const [i, code] of descriptors.entries()) putBe16(b, 58 + i * 2, code);
  return b;
}

type VpdBuilder = (unit: LogicalUnit) => Uint8Array;

const page = (code: number, length: number): Uint8Array => {
  const b = new Uint8Array(4 + length);
  b[1] = code;
  putBe16(b, 2, length);
  return b;
};

const supportedPages: VpdBuilder = () => {
  const codes = [...VPD_BUILDERS.keys()];
  const b = page(VpdPage.SUPPORTED_PAGES, codes.length);
  b.set(codes, 4);
  return b;
};

const asciiBytes = (text: string): number[] =>
  Array.from(text, (c) => {
    const code = c.charCodeAt(0);
    return code >= 0x20 && code < 0x7f ? code : 0x20;
  });

const unitSerialNumber: VpdBuilder = (unit) => {
  const serial = asciiBytes(unit.config.serial);
  const b = page(VpdPage.UNIT_SERIAL_NUMBER, serial.length);
  b.set(serial, 4);
  return b;
};

/** SPC-5 7.7.6 designation descriptor. */
const designator = (
  codeSet: number,
  association: number,
  type: number,
  body: ArrayLike<number>,
): number[] => [
  codeSet & 0x0f,
  ((association & 0x3) << 4) | (type & 0x0f),
  0,
  body.length,
  ...Array.from(body),
];

const deviceIdentification: VpdBuilder = (unit) => {
  const config = unit.config;
  const vendor = new Uint8Array(8);
  putAscii(vendor, 0, 8, config.vendor);
  const descriptors: number[] = [
    // NAA IEEE Registered Extended, binary, associated with the logical unit.
    ...designator(1, 0, 3, config.naa),
    // T10 vendor ID: vendor identification then the unit serial (SPC-5 7.7.6.4).
    ...designator(2, 0, 1, [...vendor, ...asciiBytes(config.serial)]),
  ];
  const port = config.targetPort;
  if (port) {
    // Relative target port identifier, associated with the target port.
    descriptors.push(
      ...designator(1, 1, 4, [0, 0, (port.relativePortId >>> 8) & 0xff, port.relativePortId & 0xff]),
    );
    if (port.name) {
      // SCSI name string: UTF-8, NUL terminated, padded to a multiple of 4 (SPC-5 7.7.6.11).
      const name = Array.from(new TextEncoder().encode(port.name));
      const padded = (name.length + 1 + 3) & ~3;
      while (name.length < padded) name.push(0);
      descriptors.push(...designator(3, 1, 8, name));
    }
  }
  const b = page(VpdPage.DEVICE_IDENTIFICATION, descriptors.length);
  b.set(descriptors, 4);
  return b;
};

const extendedInquiry: VpdBuilder = () => {
  const b = page(VpdPage.EXTENDED_INQUIRY, 0x3c);
  b[5] = 0x07; // HEADSUP, ORDSUP, SIMPSUP: every task attribute is accepted
  b[6] = 0x01; // V_SUP: a volatile cache, flushed by SYNCHRONIZE CACHE
  return b;
};

/** Does the unit offer the command (its table row, and the row's `supported` predicate)? */
const offers = (unit: LogicalUnit, opcode: number, serviceAction?: number) =>
  unit.table.getSupported(unit, opcode, serviceAction) !== undefined;

/** Does the unit offer WRITE SAME `opcode` with its UNMAP bit (the bit is in the unit's usage mask)? */
const writeSameUnmaps = (unit: LogicalUnit, opcode: number, flagsByte: number): boolean => {
  const entry = unit.table.getSupported(unit, opcode);
  return entry !== undefined && (usageFor(entry, unit)[flagsByte]! & 0x08) !== 0;
};

/** What VPD B2h and READ CAPACITY(16) report, derived from the commands the unit offers. */
export interface ProvisioningAbilities {
  /** UNMAP is offered. */
  readonly lbpu: boolean;
  /** WRITE SAME(16) / WRITE SAME(10) accept UNMAP=1. */
  readonly lbpws: boolean;
  readonly lbpws10: boolean;
  /** LBPME: logical block provisioning management (thin provisioning). */
  readonly thin: boolean;
  /** LBPRZ: deallocated blocks read as zeros. */
  readonly readsZero: boolean;
}

export function provisioningAbilities(unit: LogicalUnit): ProvisioningAbilities {
  const lbpu = offers(unit, 0x42);
  const lbpws = writeSameUnmaps(unit, 0x93, 1);
  const lbpws10 = writeSameUnmaps(unit, 0x41, 1);
  const thin = lbpu || lbpws || lbpws10;
  return { lbpu, lbpws, lbpws10, thin, readsZero: thin && unit.backend.unmappedReadsZero === true };
}

/** The Logical Block Provisioning log page is offered: a thin unit whose backend reports its usage. */
export const reportsProvisioningLog = (unit: LogicalUnit): boolean =>
  provisioningAbilities(unit).thin && unit.backend.provisioningUsage !== undefined;

/**
 * VPD B2h THRESHOLD EXPONENT. The Logical Block Provisioning log page counts in
 * threshold sets of 2^exponent blocks and needs them (SBC-4 6.6.7), so with the
 * page it is the smallest non-zero exponent with capacity / 2^exponent < 2^32;
 * without it 0 (no threshold sets).
 */
export function thresholdExponent(unit: LogicalUnit): number {
  if (!reportsProvisioningLog(unit)) return 0;
  let exponent = 1;
  while (unit.backend.blockCount / 2 ** exponent >= 2 ** 32) exponent++;
  return exponent;
}

/** SBC-4 6.6.4: every limit the unit enforces, and zero for the commands it does not offer. */
const blockLimits: VpdBuilder = (unit) => {
  const config = unit.config;
  const b = page(VpdPage.BLOCK_LIMITS, 0x3c);
  b[4] = 0x01; // WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is not supported
  if (offers(unit, 0x89)) b[5] = config.maxCompareAndWriteBlocks;
  putBe16(b, 6, 1 << (unit.backend.physicalBlockExponent ?? 0));
  putBe32(b, 8, config.maxTransferBlocks);
  putBe32(b, 12, config.optimalTransferBlocks);
  putBe32(b, 16, config.maxPrefetchBlocks);
  if (offers(unit, 0x42)) {
    putBe32(b, 20, config.maxUnmapBlocks);
    putBe32(b, 24, config.maxUnmapDescriptors);
    putBe32(b, 28, config.unmapGranularity);
    b[32] = 0x80; // UGAVALID, alignment 0
  }
  if (offers(unit, 0x93) || offers(unit, 0x41)) putBe64(b, 36, config.maxWriteSameBlocks);
  if (offers(unit, 0x9c)) {
    putBe32(b, 44, config.maxAtomicTransferBlocks);
    putBe32(b, 48, config.atomicAlignment);
    putBe32(b, 52, config.atomicTransferLengthGranularity);
    putBe32(b, 56, config.maxAtomicTransferBlocksWithBoundary);
    putBe32(b, 60, config.maxAtomicBoundaryBlocks);
  }
  return b;
};

const blockDeviceCharacteristics: VpdBuilder = (unit) => {
  const b = page(VpdPage.BLOCK_DEVICE_CHARACTERISTICS, 0x3c);
  putBe16(b, 4, unit.config.rotationRate);
  // WABEREQ 01b: a read after BLOCK ERASE completes GOOD (SBC-4 6.6.2); WACEREQ 00b: no CRYPTOGRAPHIC ERASE.
  const wabereq = offers(unit, 0x48, 0x02) ? 0x40 : 0x00;
  b[7] = wabereq | ((unit.config.formFactor ?? 0) & 0x0f);
  return b;
};

const logicalBlockProvisioning: VpdBuilder = (unit) => {
  const b = page(VpdPage.LOGICAL_BLOCK_PROVISIONING, 4);
  const p = provisioningAbilities(unit);
  b[4] = thresholdExponent(unit);
  let flags = 0;
  if (p.lbpu) flags |= 0x80; // LBPU
  if (p.lbpws) flags |= 0x40; // LBPWS
  if (p.lbpws10) flags |= 0x20; // LBPWS10
  if (p.readsZero) flags |= 0x01 << 2; // LBPRZ 001b: unmapped blocks read as zeros
  b[5] = flags;
  b[6] = p.thin ? 0x02 : 0x00; // PROVISIONING TYPE: thin, or fully provisioned
  return b;
};

const VPD_BUILDERS = new Map<number, VpdBuilder>([
  [VpdPage.SUPPORTED_PAGES, supportedPages],
  [VpdPage.UNIT_SERIAL_NUMBER, unitSerialNumber],
  [VpdPage.DEVICE_IDENTIFICATION, deviceIdentification],
  [VpdPage.EXTENDED_INQUIRY, extendedInquiry],
  [VpdPage.BLOCK_LIMITS, blockLimits],
  [VpdPage.BLOCK_DEVICE_CHARACTERISTICS, blockDeviceCharacteristics],
  [VpdPage.LOGICAL_BLOCK_PROVISIONING, logicalBlockProvisioning],
]);

/** VPD page codes INQUIRY answers (docs, tests). */
export const supportedVpdPages = (): number[] => [...VPD_BUILDERS.keys()];
