/**
 * The TCMU shared-memory ABI, in one table.
 *
 * Source of truth: include/uapi/linux/target_core_user.h (LP64 layout: x86-64,
 * arm64). All multi-byte ring fields are host-endian (little-endian on every
 * platform this package supports); offsets inside `req`/`rsp` are from the
 * start of the entry, `cdb_off` and iovec bases are from the start of the map.
 * Pinned by abi.test.ts.
 */
export const ABI = {
  /** TCMU_MAILBOX_VERSION */
  mailboxVersion: 2,
  /** struct tcmu_mailbox (packed; cmd_tail on its own 64-byte line, ALIGN_SIZE) */
  mailbox: {
    version: 0, // u16
    flags: 2, // u16
    cmdrOff: 4, // u32
    cmdrSize: 8, // u32
    cmdHead: 12, // u32, kernel writes (smp_store_release)
    cmdTail: 64, // u32, userspace writes
    size: 128, // sizeof(struct tcmu_mailbox) == CMDR_OFF
  },
  /** TCMU_MAILBOX_FLAG_CAP_* */
  mailboxFlags: {
    ooo: 1 << 0,
    readLen: 1 << 1,
    tmr: 1 << 2,
    keepBuf: 1 << 3,
  },
  /** struct tcmu_cmd_entry_hdr (packed, 8 bytes) */
  header: {
    lenOp: 0, // u32: low 3 bits op, rest length
    cmdId: 4, // u16
    kflags: 6, // u8
    uflags: 7, // u8
    size: 8,
  },
  /** TCMU_OP_MASK; lengths are multiples of TCMU_OP_ALIGN_SIZE */
  opMask: 0x7,
  opAlign: 8,
  /** enum tcmu_opcode */
  op: { pad: 0, cmd: 1, tmr: 2 },
  /** TCMU_UFLAG_* */
  uflags: { unknownOp: 0x1, readLen: 0x2, keepBuf: 0x4 },
  /** tcmu_cmd_entry.req */
  req: {
    iovCnt: 8, // u32
    iovBidiCnt: 12, // u32
    iovDifCnt: 16, // u32
    cdbOff: 24, // u64 (4-byte hole at 20 on LP64)
    iov: 48, // struct iovec iov[]
  },
  /** struct iovec on LP64 */
  iovec: { base: 0, len: 8, size: 16 },
  /** tcmu_cmd_entry.rsp */
  rsp: {
    scsiStatus: 8, // u8
    readLen: 12, // u32 (was __pad3 before CAP_READ_LEN)
    senseBuffer: 16, // char[96]
  },
  /** TCMU_SENSE_BUFFERSIZE */
  senseBufferSize: 96,
  /** sizeof(struct tcmu_cmd_entry) */
  cmdEntrySize: 112,
  /** struct tcmu_tmr_entry (packed) */
  tmr: {
    tmrType: 8, // u8
    cmdCnt: 12, // u32
    cmdIds: 32, // u16[]
    size: 32,
  },
  /** TCMU_TMR_* */
  tmrType: {
    unknown: 0,
    abortTask: 1,
    abortTaskSet: 2,
    clearAca: 3,
    clearTaskSet: 4,
    lunReset: 5,
    targetWarmReset: 6,
    targetColdReset: 7,
    lunResetPro: 128,
  },
  /** cmd_id range the kernel allocates (xa_alloc with XA_LIMIT(1, 0xffff)) */
  maxCmdId: 0xffff,
} as const;

/** Entry size as queue_cmd_ring computes it: max(48 + 16n, 112) + round_up(cdb_len, 8). */
export function commandEntrySize(iovCount: number, cdbLength: number): number {
  return commandEntryBaseSize(iovCount) + roundUp(cdbLength, ABI.opAlign);
}

/** tcmu_cmd_get_base_cmd_size: where the CDB starts inside the entry. */
export function commandEntryBaseSize(iovCount: number): number {
  return Math.max(ABI.req.iov + ABI.iovec.size * iovCount, ABI.cmdEntrySize);
}

/** queue_tmr_ring: round_up(sizeof(entry) + 2 * cmd_cnt, 8). */
export function tmrEntrySize(idCount: number): number {
  return roundUp(ABI.tmr.size + 2 * idCount, ABI.opAlign);
}

/**
 * scsi_command_size() as the kernel uses it to copy the CDB into the ring:
 * group code table {6, 10, 10, 12, 16, 12, 10, 10}, or 8 + cdb[7] for
 * VARIABLE LENGTH (0x7f).
 */
export function scsiCommandSize(opcode: number, additionalLength = 0): number {
  if (opcode === 0x7f) return 8 + additionalLength;
  return GROUP_CDB_LENGTH[(opcode >> 5) & 7]!;
}

const GROUP_CDB_LENGTH = [6, 10, 10, 12, 16, 12, 10, 10] as const;

export function roundUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}
