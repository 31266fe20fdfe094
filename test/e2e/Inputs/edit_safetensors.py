#!/usr/bin/env python3
"""Writes a copy of a safetensors file with some values changed (the numeric
checks' failure tests make their bad references and weights with it).

    edit_safetensors.py IN OUT EDIT...

EDIT is NAME[INDEX]=VALUE (one element of an F32 tensor, flat index; VALUE as
Python's float() reads it: 1.5, nan, inf, -inf; or of an I64 tensor, VALUE an
integer) or NAME= (the tensor emptied: its first dimension 0).
"""
import json
import re
import struct
import sys

source, target, edits = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(source, "rb") as f:
    blob = f.read()
size = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + size])
data = blob[8 + size:]
tensors = {name: bytearray(data[info["data_offsets"][0]:info["data_offsets"][1]])
           for name, info in header.items() if name != "__metadata__"}

for edit in edits:
    one = re.fullmatch(r"([^\[=]+)\[(\d+)\]=(.+)", edit)
    empty = re.fullmatch(r"([^\[=]+)=", edit)
    if one:
        name, index, value = one.group(1), int(one.group(2)), one.group(3)
        if header[name]["dtype"] == "I64":
            struct.pack_into("<q", tensors[name], 8 * index, int(value))
        else:
            assert header[name]["dtype"] == "F32", f"{name}: not an F32 or I64 tensor"
            struct.pack_into("<f", tensors[name], 4 * index, float(value))
    elif empty:
        name = empty.group(1)
        header[name]["shape"][0] = 0
        tensors[name] = bytearray()
    else:
        sys.exit(f"edit_safetensors.py: cannot read the edit '{edit}'")

offset = 0
for name in tensors:
    header[name]["data_offsets"] = [offset, offset + len(tensors[name])]
    offset += len(tensors[name])
text = json.dumps(header).encode()
with open(target, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(tensors.values()))
