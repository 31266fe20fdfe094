#!/usr/bin/env python3
"""Copies a GGUF file with one more metadata entry (standard library only):

    gguf_add_kv.py IN.gguf OUT.gguf KEY f32|u32|str VALUE

The tensor infos and data are copied as they are; the data section starts at
the next multiple of the file's alignment (general.alignment, default 32)
after the longer header, so the tensors' offsets (relative to it) still hold.
"""
import os
import struct
import sys

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus"))
from make_corpus import gguf_kv  # noqa: E402  (the corpus' metadata encoder)

SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def main():
    src, dst, key, kind, value = sys.argv[1:6]
    blob = open(src, "rb").read()
    if blob[:4] != b"GGUF":
        sys.exit(f"{src}: not a GGUF file")
    pos = 8
    tensors, kvs = struct.unpack_from("<QQ", blob, pos)
    pos += 16
    alignment = 32

    def string(p):
        (n,) = struct.unpack_from("<Q", blob, p)
        return blob[p + 8:p + 8 + n].decode(), p + 8 + n

    def skip(vtype, p):
        if vtype in SCALAR:
            return p + SCALAR[vtype]
        if vtype == 8:
            return string(p)[1]
        if vtype == 9:
            etype, count = struct.unpack_from("<IQ", blob, p)
            p += 12
            for _ in range(count):
                p = skip(etype, p)
            return p
        sys.exit(f"{src}: unknown metadata type {vtype}")

    kv_start = pos
    for _ in range(kvs):
        name, pos = string(pos)
        (vtype,) = struct.unpack_from("<I", blob, pos)
        if name == "general.alignment":
            (alignment,) = struct.unpack_from("<I", blob, pos + 4)
        pos = skip(vtype, pos + 4)
    kv_end = pos
    for _ in range(tensors):
        pos = string(pos)[1]
        (dims,) = struct.unpack_from("<I", blob, pos)
        pos += 4 + 8 * dims + 12
    infos_end = pos
    data_start = infos_end + (-infos_end % alignment)

    kinds = {"f32": (6, float), "u32": (4, int), "str": (8, str)}
    if kind not in kinds:
        sys.exit(f"unknown kind {kind!r}: f32, u32 or str")
    vtype, convert = kinds[kind]
    entry = gguf_kv(key, vtype, convert(value))
    head = blob[:8] + struct.pack("<QQ", tensors, kvs + 1) + blob[kv_start:kv_end] + entry + \
        blob[kv_end:infos_end]
    head += b"\0" * (-len(head) % alignment)
    with open(dst, "wb") as f:
        f.write(head + blob[data_start:])


if __name__ == "__main__":
    main()
