"""Copies a model made by moir-make-model with its routers rewritten so that
expert choices tie: router rows 1 and 2 equal row 0 (a three-way tie across
the top-k boundary) and, with --groups, experts 4 and 5 equal 0 and 1 (two
groups with equal scores). With --routing the config's routing changes too
(for example noaux_tc, which adds a zero correction bias per router, so the
ties stay). The ties are exact: equal rows give equal products in any
kernel. Pure Python (no numpy): safetensors is an 8-byte header length, a
JSON header and the tensors' bytes."""
import json
import os
import shutil
import struct
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    opts = sys.argv[3:]
    groups = "--groups" in opts
    routing = {}
    for o in opts:
        if o.startswith("--set="):
            key, value = o[len("--set="):].split("=", 1)
            routing[key] = json.loads(value)
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    meta = header.pop("__metadata__", None)
    routers = [k for k in header if k.endswith(".gate.weight") and header[k]["dtype"] == "F32"]
    if not routers:
        sys.exit("no f32 router (*.gate.weight) in " + src)
    for name in routers:
        experts, hidden = header[name]["shape"]
        begin = header[name]["data_offsets"][0]
        row = hidden * 4
        first = data[begin:begin + row]
        copies = [1, 2] + ([4] if groups and experts >= 8 else [])
        for r in copies:
            data[begin + r * row:begin + (r + 1) * row] = first
        if groups and experts >= 8:
            data[begin + 5 * row:begin + 6 * row] = data[begin + row:begin + 2 * row]
    tensors = {k: (v, bytes(data[v["data_offsets"][0]:v["data_offsets"][1]])) for k, v in header.items()}
    if "noaux_tc" in routing.values():
        for name in routers:
            experts = header[name]["shape"][0]
            bias = name[: -len("weight")] + "e_score_correction_bias"
            tensors[bias] = ({"dtype": "F32", "shape": [experts]}, bytes(4 * experts))
    out_header, blob = {}, bytearray()
    for k, (v, raw) in tensors.items():
        out_header[k] = {"dtype": v["dtype"], "shape": v["shape"],
                         "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    if meta is not None:
        out_header["__metadata__"] = meta
    text = json.dumps(out_header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob)
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config.update(routing)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f)
    for extra in os.listdir(src):
        if extra not in ("model.safetensors", "config.json"):
            path = os.path.join(src, extra)
            if os.path.isfile(path):
                shutil.copy(path, dst)
    print(f"{len(routers)} routers tied")


main()
