#!/usr/bin/env python3
"""Writes a quantized copy of a float safetensors checkpoint, for benchmarks
(not a quantizer of quality: round-to-nearest, no Hessian, no calibration).

    quantize_from_float.py IN_DIR OUT_DIR [--format gptq|ct-int8]
                           [--act-order] [--group N] [--w8a8] [--seed S]

Every linear of the decoder layers (attention projections, MLP and expert
projections; not the router or lm_head) is quantized; other tensors are
copied. Needs numpy.

- gptq (default): GPTQ v1 (AutoGPTQ) qweight/qzeros/scales/g_idx, 4-bit,
  symmetric, groups of N inputs (default 128). With --act-order (desc_act),
  each weight's inputs are quantized in a random order, tied as GPTQ ties
  them (q/k/v share one, and gate/up), so g_idx is not k / N: what moirc
  sorts and gathers.
- ct-int8: compressed-tensors int-quantized, I8 weight with an F32 scale per
  output row (max|row| / 127.5, llm-compressor's minmax), W8A16; with
  --w8a8, input_activations int8, dynamic, per token (llm-compressor's W8A8
  scheme).
"""

import argparse
import json
import os
import re
import shutil
import struct

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("src")
p.add_argument("out")
p.add_argument("--format", choices=["gptq", "ct-int8"], default="gptq")
p.add_argument("--w8a8", action="store_true")
p.add_argument("--act-order", action="store_true")
p.add_argument("--group", type=int, default=128)
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
rng = np.random.default_rng(args.seed)

with open(os.path.join(args.src, "model.safetensors"), "rb") as f:
    blob = f.read()
size = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + size])
data = memoryview(blob)[8 + size:]

LINEAR = re.compile(r"\.(self_attn\.[qkvo]_proj|mlp\.(shared_experts?\.|experts\.\d+\.)?"
                    r"(gate|up|down)_proj|block_sparse_moe\.experts\.\d+\.w[123])\.weight$")


def tie(name):
    """GPTQ quantizes these from the same inputs (one Hessian, one order)."""
    return (name.replace("k_proj", "q_proj").replace("v_proj", "q_proj")
            .replace("up_proj", "gate_proj").replace(".w3.", ".w1."))


def floats(info):
    raw = data[info["data_offsets"][0]:info["data_offsets"][1]]
    if info["dtype"] == "BF16":
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    if info["dtype"] == "F16":
        return np.frombuffer(raw, np.float16).astype(np.float32)
    return np.frombuffer(raw, np.float32)


tensors, orders = {}, {}
for name, info in header.items():
    if name == "__metadata__":
        continue
    if not LINEAR.search(name):
        tensors[name] = (info["dtype"], info["shape"],
                         bytes(data[info["data_offsets"][0]:info["data_offsets"][1]]))
        continue
    rows, cols = info["shape"]
    w = floats(info).reshape(rows, cols)
    base = name[:-len(".weight")]
    if args.format == "ct-int8":
        scale = (np.abs(w).max(1, keepdims=True) / np.float32(127.5)).astype(np.float32)
        scale[scale == 0] = np.finfo(np.float32).eps
        q = np.clip(np.rint(w / scale), -128, 127).astype(np.int8)
        tensors[name] = ("I8", [rows, cols], q.tobytes())
        tensors[base + ".weight_scale"] = ("F32", [rows, 1], scale.tobytes())
        continue
    order = np.arange(cols)
    if args.act_order:
        order = orders.setdefault(tie(name), rng.permutation(cols))
    g_idx = np.empty(cols, np.int32)
    g_idx[order] = np.arange(cols) // args.group
    wp = w[:, order].reshape(rows, cols // args.group, args.group)
    scales = np.maximum(2 * np.abs(wp).max(2) / 15, 2.0 ** -14).astype(np.float16)  # [rows, groups]
    s = scales.astype(np.float32)[:, g_idx]  # per original input
    q = np.clip(np.rint(w / s) + 8, 0, 15).astype(np.uint32)  # [rows, cols]
    qweight = np.zeros((cols // 8, rows), np.uint32)
    for j in range(8):
        qweight |= q[:, j::8].T << np.uint32(4 * j)
    groups = cols // args.group
    tensors[base + ".qweight"] = ("I32", [cols // 8, rows], qweight.tobytes())
    tensors[base + ".qzeros"] = ("I32", [groups, rows // 8],
                                 np.full((groups, rows // 8), 0x77777777, np.uint32).tobytes())
    tensors[base + ".scales"] = ("F16", [groups, rows], np.ascontiguousarray(scales.T).tobytes())
    tensors[base + ".g_idx"] = ("I32", [cols], g_idx.tobytes())

os.makedirs(args.out, exist_ok=True)
out_header, offset = {}, 0
for name, (dtype, shape, raw) in tensors.items():
    out_header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
    offset += len(raw)
text = json.dumps(out_header).encode()
text += b" " * (-len(text) % 8)
with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for _, _, raw in tensors.values():
        f.write(raw)
with open(os.path.join(args.src, "config.json")) as f:
    config = json.load(f)
if args.format == "gptq":
    config["quantization_config"] = {
        "bits": 4, "checkpoint_format": "gptq", "desc_act": args.act_order,
        "group_size": args.group, "quant_method": "gptq", "static_groups": False, "sym": True,
        "true_sequential": True}
else:
    def int8(**kw):
        return dict({"num_bits": 8, "type": "int", "symmetric": True, "group_size": None,
                     "block_structure": None, "actorder": None, "observer": None,
                     "observer_kwargs": {}}, **kw)
    inputs = int8(strategy="token", dynamic=True) if args.w8a8 else None
    config["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "int-quantized",
        "quantization_status": "compressed", "global_compression_ratio": None,
        "ignore": ["lm_head", "re:.*block_sparse_moe.gate$", "re:.*mlp.gate$"],
        "kv_cache_scheme": None,
        "config_groups": {"group_0": {
            "format": "int-quantized", "targets": ["Linear"], "output_activations": None,
            "input_activations": inputs,
            "weights": int8(strategy="channel", dynamic=False, observer="minmax")}}}
with open(os.path.join(args.out, "config.json"), "w") as f:
    json.dump(config, f, indent=1)
for extra in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    if os.path.exists(os.path.join(args.src, extra)):
        shutil.copy(os.path.join(args.src, extra), args.out)
