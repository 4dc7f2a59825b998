#!/usr/bin/env python3
"""Sends CDBs to a SCSI device with the SG_IO ioctl, one per input line (tools/fuzz/kernel.ts).

Input line:  <direction none|in|out> <transfer length> <CDB hex> <timeout ms>
Output line: ok <status> <host_status> <driver_status> <resid> <duration ms> <sense hex or ->
         or: errno <errno>            (the ioctl itself refused it, e.g. EINVAL)
Node has no ioctl, and one process for all commands keeps 10,000 of them quick under TCG.
"""
import ctypes
import errno
import fcntl
import os
import sys

SG_IO = 0x2285
DIRECTIONS = {"none": -1, "out": -2, "in": -3}


class SgIoHdr(ctypes.Structure):  # struct sg_io_hdr, <scsi/sg.h>
    _fields_ = [
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    ]


def main():
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_NONBLOCK)
    data = ctypes.create_string_buffer(1 << 20)
    sense = ctypes.create_string_buffer(252)
    for line in sys.stdin:
        direction, length, cdb_hex, timeout_ms = line.split()
        cdb = ctypes.create_string_buffer(bytes.fromhex(cdb_hex))
        length = min(int(length), len(data))
        if direction == "out":
            ctypes.memset(data, 0xA5, length)
        hdr = SgIoHdr(
            interface_id=ord("S"),
            dxfer_direction=DIRECTIONS[direction] if length or direction == "none" else -1,
            cmd_len=len(cdb_hex) // 2,
            mx_sb_len=len(sense),
            dxfer_len=length if direction != "none" else 0,
            dxferp=ctypes.addressof(data),
            cmdp=ctypes.addressof(cdb),
            sbp=ctypes.addressof(sense),
            timeout=int(timeout_ms),
        )
        try:
            fcntl.ioctl(fd, SG_IO, hdr, True)
        except OSError as error:
            print("errno", error.errno or errno.EIO, flush=True)
            continue
        sense_hex = sense.raw[: hdr.sb_len_wr].hex() or "-"
        print("ok", hdr.status, hdr.host_status, hdr.driver_status, hdr.resid, hdr.duration, sense_hex, flush=True)


main()
