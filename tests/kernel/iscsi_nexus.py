#!/usr/bin/env python3
"""Several iSCSI initiators in one process, over libiscsi (tests/kernel/initiators.kernel.test.ts).

libiscsi's tools open one session each and exit; a test of unit attentions and
reservations needs sessions that stay logged in while another initiator acts.
One JSON request per input line, one JSON answer per output line:

  {"op": "login", "session": "A", "initiator": IQN, "target": IQN, "portal": "127.0.0.1:3260", "lun": 0}
  {"op": "cdb", "session": "A", "cdb": HEX, "dir": "none"|"in"|"out", "length": N, "data": HEX}
      -> {"status": N, "sense": {"key": N, "asc": N, "ascq": N} | null, "data": HEX}
  {"op": "lun-reset", "session": "A"}  -> {"ok": true}
  {"op": "logout", "session": "A"}     -> {"ok": true}
Errors: {"error": TEXT}. No libiscsi headers are needed: the few calls are declared here.
"""
import ctypes
import json
import sys

lib = ctypes.CDLL("libiscsi.so.7")
vp = ctypes.c_void_p
lib.iscsi_create_context.restype = vp
lib.iscsi_create_context.argtypes = [ctypes.c_char_p]
lib.iscsi_set_targetname.argtypes = [vp, ctypes.c_char_p]
lib.iscsi_set_session_type.argtypes = [vp, ctypes.c_int]
lib.iscsi_set_header_digest.argtypes = [vp, ctypes.c_int]
lib.iscsi_full_connect_sync.argtypes = [vp, ctypes.c_char_p, ctypes.c_int]
lib.iscsi_get_error.restype = ctypes.c_char_p
lib.iscsi_get_error.argtypes = [vp]
lib.iscsi_logout_sync.argtypes = [vp]
lib.iscsi_destroy_context.argtypes = [vp]
lib.iscsi_task_mgmt_lun_reset_sync.argtypes = [vp, ctypes.c_uint32]
lib.scsi_create_task.restype = vp
lib.scsi_create_task.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
lib.iscsi_scsi_command_sync.restype = vp
lib.iscsi_scsi_command_sync.argtypes = [vp, ctypes.c_int, vp, vp]
lib.scsi_free_scsi_task.argtypes = [vp]

ISCSI_SESSION_NORMAL = 2
ISCSI_HEADER_DIGEST_NONE = 0
XFER = {"none": 0, "in": 1, "out": 2}  # SCSI_XFER_NONE / READ / WRITE


class Sense(ctypes.Structure):  # struct scsi_sense, <iscsi/scsi-lowlevel.h>
    _fields_ = [
        ("error_type", ctypes.c_ubyte),
        ("key", ctypes.c_int),
        ("ascq", ctypes.c_int),  # ASC << 8 | ASCQ
        ("flags", ctypes.c_ubyte),  # three one-bit fields; GCC packs bit_pointer next to them
        ("bit_pointer", ctypes.c_ubyte),
        ("field_pointer", ctypes.c_uint16),
    ]


class Data(ctypes.Structure):  # struct scsi_data
    _fields_ = [("size", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_ubyte))]


class Task(ctypes.Structure):  # the head of struct scsi_task
    _fields_ = [
        ("status", ctypes.c_int),
        ("cdb_size", ctypes.c_int),
        ("xfer_dir", ctypes.c_int),
        ("expxferlen", ctypes.c_int),
        ("cdb", ctypes.c_ubyte * 16),
        ("residual_status", ctypes.c_int),
        ("residual", ctypes.c_size_t),
        ("sense", Sense),
        ("datain", Data),
    ]


class IscsiData(ctypes.Structure):  # struct iscsi_data
    _fields_ = [("size", ctypes.c_size_t), ("data", ctypes.c_char_p)]


sessions = {}


def error(ctx):
    return lib.iscsi_get_error(ctx).decode(errors="replace")


def login(req):
    ctx = lib.iscsi_create_context(req["initiator"].encode())
    if not ctx:
        return {"error": "iscsi_create_context failed"}
    lib.iscsi_set_targetname(ctx, req["target"].encode())
    lib.iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL)
    lib.iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE)
    # Logs in and, like every libiscsi tool, sends TEST UNIT READY until the
    # login's own unit attentions are cleared.
    if lib.iscsi_full_connect_sync(ctx, req["portal"].encode(), req["lun"]) != 0:
        message = error(ctx)
        lib.iscsi_destroy_context(ctx)
        return {"error": f"login failed: {message}"}
    sessions[req["session"]] = (ctx, req["lun"])
    return {"ok": True}


def cdb(req):
    ctx, lun = sessions[req["session"]]
    raw = bytes.fromhex(req["cdb"])
    task = lib.scsi_create_task(len(raw), raw, XFER[req["dir"]], req.get("length", 0))
    out = None
    if req["dir"] == "out":
        payload = bytes.fromhex(req["data"])
        out = IscsiData(len(payload), payload)
    done = lib.iscsi_scsi_command_sync(ctx, lun, task, ctypes.byref(out) if out else None)
    if not done:
        lib.scsi_free_scsi_task(task)
        return {"error": f"command failed: {error(ctx)}"}
    t = Task.from_address(done)
    answer = {"status": t.status, "sense": None, "data": ""}
    if t.status == 2:  # CHECK CONDITION
        s = t.sense
        answer["sense"] = {"key": s.key, "asc": s.ascq >> 8, "ascq": s.ascq & 0xFF}
    # After CHECK CONDITION, datain holds the sense bytes libiscsi decoded above.
    elif not 0 <= t.datain.size <= req.get("length", 0):  # a wrong struct layout shows here
        lib.scsi_free_scsi_task(done)
        return {"error": f"Data-In size {t.datain.size} for a {req.get('length', 0)}-byte buffer"}
    elif t.datain.size > 0:
        answer["data"] = bytes(t.datain.data[: t.datain.size]).hex()
    lib.scsi_free_scsi_task(done)
    return answer


def lun_reset(req):
    ctx, lun = sessions[req["session"]]
    if lib.iscsi_task_mgmt_lun_reset_sync(ctx, lun) != 0:
        return {"error": f"LUN RESET failed: {error(ctx)}"}
    return {"ok": True}


def logout(req):
    ctx, _ = sessions.pop(req["session"])
    lib.iscsi_logout_sync(ctx)
    lib.iscsi_destroy_context(ctx)
    return {"ok": True}


OPS = {"login": login, "cdb": cdb, "lun-reset": lun_reset, "logout": logout}

for line in sys.stdin:
    request = json.loads(line)
    try:
        reply = OPS[request["op"]](request)
    except Exception as exc:  # the test reads the message; the process keeps serving
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
