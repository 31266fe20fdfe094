#!/usr/bin/env python3
"""Runs a command in which Linux refuses the AMX tile state: a seccomp filter
makes arch_prctl(ARCH_REQ_XCOMP_PERM, ...) fail with EPERM (every other
system call, and arch_prctl's other requests, pass), as a kernel or sandbox
that does not grant the tiles would. x86-64 Linux only.

    deny_amx.py COMMAND [ARGS...]
"""
import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
AUDIT_ARCH_X86_64, NR_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM = 0xC000003E, 158, 0x1023
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, DENY = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM

# seccomp_data: nr at 0, arch at 4, args[0] (low word) at 16.
program = [
    (LD_ABS, 0, 0, 4), (JEQ, 0, 5, AUDIT_ARCH_X86_64),
    (LD_ABS, 0, 0, 0), (JEQ, 0, 3, NR_ARCH_PRCTL),
    (LD_ABS, 0, 0, 16), (JEQ, 0, 1, ARCH_REQ_XCOMP_PERM),
    (RET, 0, 0, DENY), (RET, 0, 0, ALLOW),
]
filters = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *f) for f in program))


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


fprog = SockFprog(len(program), ctypes.addressof(filters))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit("deny_amx.py: cannot install the seccomp filter: " + os.strerror(ctypes.get_errno()))
os.execvp(sys.argv[1], sys.argv[1:])
