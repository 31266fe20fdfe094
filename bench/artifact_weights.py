#!/usr/bin/env python3
"""Ship an artifact without its weights and put them back where it runs.

A benchmark model's artifact is mostly weights (1.3 GB for the Mixtral-shaped
bf16 one), too much to carry to a GPU machine; its weights are deterministic
(moir-make-model), so the GPU machine regenerates the checkpoint and this
script packs it back into the artifact exactly as moirc did (docs/artifact.md:
each weight argument's tensors concatenated at its offset in the weights
section). `moir-run --inspect --verify` then checks the weights' checksum that
moirc computed, so the result is byte-identical to the compiled artifact.

  artifact_weights.py strip FULL.moir THIN.moir
  artifact_weights.py attach THIN.moir CHECKPOINT_DIR OUT.moir
"""
import json
import struct
import sys

HEADER = struct.Struct("<8sII6Q")


def read_header(data, path):
    magic, version, _, mo, mb, co, cb, wo, wb = HEADER.unpack_from(data, 0)
    if magic != b"MOIRART\0" or version != 1:
        sys.exit(f"{path}: not a version-1 MoIR artifact")
    return mo, mb, co, cb, wo, wb


def strip(full, thin):
    with open(full, "rb") as f:
        head = f.read(64)
        mo, mb, co, cb, wo, wb = read_header(head, full)
        f.seek(0)
        data = f.read(wo)
    with open(thin, "wb") as f:
        f.write(data)
    print(f"{thin}: {len(data)} bytes (weights section of {wb} bytes left out)")


def attach(thin, checkpoint, out):
    data = open(thin, "rb").read()
    mo, mb, co, cb, wo, wb = read_header(data, thin)
    if len(data) < wo:
        sys.exit(f"{thin}: truncated before the weights section")
    manifest = data[mo:mo + mb].decode()
    st_path = f"{checkpoint}/model.safetensors"
    st = open(st_path, "rb")
    (hbytes,) = struct.unpack("<Q", st.read(8))
    table = json.loads(st.read(hbytes))
    base = 8 + hbytes
    dtypes = {"bf16": "BF16", "f32": "F32", "f16": "F16"}
    with open(out, "wb") as o:
        o.write(data[:wo])
        o.truncate(wo + wb)
        for line in manifest.splitlines():
            words = line.split()
            if len(words) < 5 or words[0] != "arg" or words[2] != "weight":
                continue
            dtype, rank = words[3], int(words[4])
            offset, size, names = int(words[5 + rank]), int(words[6 + rank]), words[7 + rank]
            o.seek(wo + offset)
            written = 0
            for name in names.split(","):
                t = table.get(name)
                if t is None:
                    sys.exit(f"{st_path}: no tensor '{name}'")
                if t["dtype"] != dtypes.get(dtype):
                    sys.exit(f"{st_path}: '{name}' is {t['dtype']}, the artifact packs {dtype}")
                begin, end = t["data_offsets"]
                st.seek(base + begin)
                o.write(st.read(end - begin))
                written += end - begin
            if written != size:
                sys.exit(f"{st_path}: tensors {names} hold {written} bytes, the artifact expects {size}")
    print(f"{out}: weights attached from {st_path}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "strip":
        strip(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "attach":
        attach(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
