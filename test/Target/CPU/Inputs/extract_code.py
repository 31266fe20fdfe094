#!/usr/bin/env python3
"""Writes the compiled-code section of a MoIR artifact to a file.

    extract_code.py MODEL.moir OUT.so
"""
import struct
import sys

with open(sys.argv[1], "rb") as f:
    header = f.read(64)
    magic, version, _, _, _, code_off, code_len = struct.unpack("<8sIIQQQQ", header[:48])
    assert magic == b"MOIRART\0" and version == 1, "not a MoIR artifact"
    f.seek(code_off)
    code = f.read(code_len)
with open(sys.argv[2], "wb") as out:
    out.write(code)
