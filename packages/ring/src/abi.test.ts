import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ABI, commandEntryBaseSize, commandEntrySize, scsiCommandSize, tmrEntrySize } from './abi.js';

// Expected values copied by hand from include/uapi/linux/target_core_user.h
// (struct tcmu_mailbox, tcmu_cmd_entry_hdr, tcmu_cmd_entry, tcmu_tmr_entry; LP64).
describe('ABI table', () => {
  it('pins the mailbox layout', () => {
    expect(ABI.mailboxVersion).toBe(2);
    expect(ABI.mailbox).toEqual({
      version: 0,
      flags: 2,
      cmdrOff: 4,
      cmdrSize: 8,
      cmdHead: 12,
      cmdTail: 64,
      size: 128,
    });
    expect(ABI.mailboxFlags).toEqual({ ooo: 1, readLen: 2, tmr: 4, keepBuf: 8 });
  });

  it('pins the entry header, opcodes and uflags', () => {
    expect(ABI.header).toEqual({ lenOp: 0, cmdId: 4, kflags: 6, uflags: 7, size: 8 });
    expect(ABI.opMask).toBe(7);
    expect(ABI.opAlign).toBe(8);
    expect(ABI.op).toEqual({ pad: 0, cmd: 1, tmr: 2 });
    expect(ABI.uflags).toEqual({ unknownOp: 1, readLen: 2, keepBuf: 4 });
  });

  it('pins req, rsp, iovec and the entry size', () => {
    expect(ABI.req).toEqual({ iovCnt: 8, iovBidiCnt: 12, iovDifCnt: 16, cdbOff: 24, iov: 48 });
    expect(ABI.iovec).toEqual({ base: 0, len: 8, size: 16 });
    expect(ABI.rsp).toEqual({ scsiStatus: 8, readLen: 12, senseBuffer: 16 });
    expect(ABI.senseBufferSize).toBe(96);
    expect(ABI.cmdEntrySize).toBe(112);
  });

  it('pins the TMR entry and TMR types', () => {
    expect(ABI.tmr).toEqual({ tmrType: 8, cmdCnt: 12, cmdIds: 32, size: 32 });
    expect(ABI.tmrType).toEqual({
      unknown: 0,
      abortTask: 1,
      abortTaskSet: 2,
      clearAca: 3,
      clearTaskSet: 4,
      lunReset: 5,
      targetWarmReset: 6,
      targetColdReset: 7,
      lunResetPro: 128,
    });
  });

  it('agrees with offsetof() compiled against the installed kernel header', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcmu-abi-'));
    try {
      writeFileSync(
        join(dir, 'abi.c'),
        `#include <stdio.h>
#include <stddef.h>
#include <linux/target_core_user.h>
#define O(t, f) printf("%zu ", offsetof(struct t, f))
int main(void) {
  O(tcmu_mailbox, flags); O(tcmu_mailbox, cmdr_off); O(tcmu_mailbox, cmdr_size); O(tcmu_mailbox, cmd_head);
  O(tcmu_mailbox, cmd_tail); printf("%zu ", sizeof(struct tcmu_mailbox));
  O(tcmu_cmd_entry, hdr.cmd_id); O(tcmu_cmd_entry, hdr.uflags);
  O(tcmu_cmd_entry, req.iov_cnt); O(tcmu_cmd_entry, req.iov_bidi_cnt); O(tcmu_cmd_entry, req.cdb_off);
  O(tcmu_cmd_entry, req.iov); O(tcmu_cmd_entry, rsp.scsi_status); O(tcmu_cmd_entry, rsp.read_len);
  O(tcmu_cmd_entry, rsp.sense_buffer); printf("%zu ", sizeof(struct tcmu_cmd_entry));
  O(tcmu_tmr_entry, tmr_type); O(tcmu_tmr_entry, cmd_cnt); O(tcmu_tmr_entry, cmd_ids);
  printf("%d %d %d\\n", TCMU_SENSE_BUFFERSIZE, TCMU_MAILBOX_VERSION, TCMU_UFLAG_READ_LEN);
  return 0;
}
`,
      );
      execFileSync('cc', ['-o', join(dir, 'abi'), join(dir, 'abi.c')]);
      const values = execFileSync(join(dir, 'abi'), { encoding: 'utf8' }).trim().split(' ').map(Number);
      expect(values).toEqual([
        ABI.mailbox.flags,
        ABI.mailbox.cmdrOff,
        ABI.mailbox.cmdrSize,
        ABI.mailbox.cmdHead,
        ABI.mailbox.cmdTail,
        ABI.mailbox.size,
        ABI.header.cmdId,
        ABI.header.uflags,
        ABI.req.iovCnt,
        ABI.req.iovBidiCnt,
        ABI.req.cdbOff,
        ABI.req.iov,
        ABI.rsp.scsiStatus,
        ABI.rsp.readLen,
        ABI.rsp.senseBuffer,
        ABI.cmdEntrySize,
        ABI.tmr.tmrType,
        ABI.tmr.cmdCnt,
        ABI.tmr.cmdIds,
        ABI.senseBufferSize,
        ABI.mailboxVersion,
        ABI.uflags.readLen,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('entry sizes (queue_cmd_ring / queue_tmr_ring)', () => {
  it('never goes below sizeof(tcmu_cmd_entry) and puts the CDB after the iovecs', () => {
    expect(commandEntryBaseSize(0)).toBe(112);
    expect(commandEntryBaseSize(4)).toBe(112);
    expect(commandEntryBaseSize(5)).toBe(128);
    expect(commandEntrySize(1, 10)).toBe(128);
    expect(commandEntrySize(1, 16)).toBe(128);
    expect(commandEntrySize(1, 6)).toBe(120);
    expect(commandEntrySize(32, 16)).toBe(48 + 512 + 16);
  });

  it('sizes TMR entries as round_up(32 + 2n, 8)', () => {
    expect(tmrEntrySize(0)).toBe(32);
    expect(tmrEntrySize(1)).toBe(40);
    expect(tmrEntrySize(4)).toBe(40);
    expect(tmrEntrySize(5)).toBe(48);
  });

  it('derives CDB lengths from the group code like scsi_command_size()', () => {
    expect([0x00, 0x28, 0x5a, 0x7e, 0x88, 0xa0, 0xc0, 0xe0].map((op) => scsiCommandSize(op))).toEqual([
      6, 10, 10, 12, 16, 12, 10, 10,
    ]);
    expect(scsiCommandSize(0x7f, 0x18)).toBe(32);
  });
});
