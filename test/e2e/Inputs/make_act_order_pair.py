#!/usr/bin/env python3
"""Writes a random act-order GPTQ checkpoint and its dequantized twin.

    make_act_order_pair.py FAMILY SEED OUT

FAMILY is llama or mixtral; SEED an integer, or "random" (drawn here and
printed, so that a failing run can be repeated). OUT/gptq holds an AutoGPTQ
v1 checkpoint with desc_act true: every linear of the decoder layers is
4-bit with groups of 32 inputs in a random order (g_idx[k] = invperm[k] //
32, tied as GPTQ ties them: q/k/v share one order, and gate/up; o and down
have their own). OUT/float holds the same model with those weights
dequantized by the published formula, W[n, k] = scales[g_idx[k], n] *
(q[k, n] - (qzeros[g_idx[k], n] + 1)), as F32. Compiled by MoIR, the two must
agree: an oracle for act-order import that shares nothing with it.
Standard library only.
"""

import json
import os
import random
import struct
import sys

family, seed_arg, out = sys.argv[1], sys.argv[2], sys.argv[3]
seed = random.SystemRandom().randrange(1 << 31) if seed_arg == "random" else int(seed_arg)
print(f"act-order pair: {family}, seed {seed}")
rng = random.Random(seed)

HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, VOCAB, EXPERTS, GROUP = 96, 128, 2, 3, 1, 80, 3, 32
HEAD_DIM = HIDDEN // HEADS


def f16(x):
    return struct.unpack("<e", struct.pack("<e", x))[0]


def matrix(rows, cols, scale):
    return [[rng.gauss(0.0, scale) for _ in range(cols)] for _ in range(rows)]


def write_safetensors(path, tensors):
    """tensors: name -> (dtype, shape, bytes)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def f32(shape, values):
    return ("F32", shape, struct.pack(f"<{len(values)}f", *values))


def quantize(w, order):
    """GPTQ v1 tensors of float w [rows][cols] with columns quantized in
    `order`, and the dequantized matrix."""
    rows, cols = len(w), len(w[0])
    groups = cols // GROUP
    g_idx = [0] * cols
    for i, k in enumerate(order):
        g_idx[k] = i // GROUP
    scales = [[0.0] * rows for _ in range(groups)]
    for n in range(rows):
        for g in range(groups):
            members = [k for k in range(cols) if g_idx[k] == g]
            scales[g][n] = max(f16(2 * max(abs(w[n][k]) for k in members) / 15), 2.0 ** -14)
    q = [[min(15, max(0, round(w[n][k] / scales[g_idx[k]][n]) + 8)) for k in range(cols)]
         for n in range(rows)]
    qweight = []
    for i in range(cols // 8):
        for n in range(rows):
            word = 0
            for j in range(8):
                word |= q[n][8 * i + j] << (4 * j)
            qweight.append(word)
    # zero 8 stored as 7 (v1), in every nibble.
    qzeros = [0x77777777] * (groups * rows // 8)
    deq = [[scales[g_idx[k]][n] * (q[n][k] - 8) for k in range(cols)] for n in range(rows)]
    flat_scales = [s for row in scales for s in row]
    return {
        "qweight": ("I32", [cols // 8, rows], struct.pack(f"<{len(qweight)}I", *qweight)),
        "qzeros": ("I32", [groups, rows // 8], struct.pack(f"<{len(qzeros)}I", *qzeros)),
        "scales": ("F16", [groups, rows], struct.pack(f"<{len(flat_scales)}e", *flat_scales)),
        "g_idx": ("I32", [cols], struct.pack(f"<{cols}i", *g_idx)),
    }, deq


gptq, floats = {}, {}
orders = {}


def linear(name, rows, cols, tie=None):
    order = orders.setdefault(tie or name, rng.sample(range(cols), cols))
    packed, deq = quantize(matrix(rows, cols, cols ** -0.5), order)
    for part, t in packed.items():
        gptq[f"{name}.{part}"] = t
    floats[f"{name}.weight"] = f32([rows, cols], [x for row in deq for x in row])


def plain(name, shape, values):
    gptq[name] = floats[name] = f32(shape, values)


plain("model.embed_tokens.weight", [VOCAB, HIDDEN], [rng.gauss(0, 1) for _ in range(VOCAB * HIDDEN)])
for l in range(LAYERS):
    p = f"model.layers.{l}."
    plain(p + "input_layernorm.weight", [HIDDEN], [1 + rng.gauss(0, 0.1) for _ in range(HIDDEN)])
    plain(p + "post_attention_layernorm.weight", [HIDDEN],
          [1 + rng.gauss(0, 0.1) for _ in range(HIDDEN)])
    a = p + "self_attn."
    linear(a + "q_proj", HEADS * HEAD_DIM, HIDDEN, a + "qkv")
    linear(a + "k_proj", KV_HEADS * HEAD_DIM, HIDDEN, a + "qkv")
    linear(a + "v_proj", KV_HEADS * HEAD_DIM, HIDDEN, a + "qkv")
    linear(a + "o_proj", HIDDEN, HEADS * HEAD_DIM)
    if family == "mixtral":
        m = p + "block_sparse_moe."
        plain(m + "gate.weight", [EXPERTS, HIDDEN], [rng.gauss(0, 0.3) for _ in range(EXPERTS * HIDDEN)])
        for e in range(EXPERTS):
            x = f"{m}experts.{e}."
            linear(x + "w1", FFN, HIDDEN, x + "w13")
            linear(x + "w3", FFN, HIDDEN, x + "w13")
            linear(x + "w2", HIDDEN, FFN)
    else:
        m = p + "mlp."
        linear(m + "gate_proj", FFN, HIDDEN, m + "gate_up")
        linear(m + "up_proj", FFN, HIDDEN, m + "gate_up")
        linear(m + "down_proj", HIDDEN, FFN)
plain("model.norm.weight", [HIDDEN], [1 + rng.gauss(0, 0.1) for _ in range(HIDDEN)])
plain("lm_head.weight", [VOCAB, HIDDEN], [rng.gauss(0, HIDDEN ** -0.5) for _ in range(VOCAB * HIDDEN)])

config = {
    "architectures": ["MixtralForCausalLM" if family == "mixtral" else "LlamaForCausalLM"],
    "model_type": family, "hidden_size": HIDDEN, "intermediate_size": FFN,
    "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
    "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "hidden_act": "silu", "max_position_embeddings": 256,
}
if family == "mixtral":
    config.update(num_local_experts=EXPERTS, num_experts_per_tok=2)
quantization = {"bits": 4, "checkpoint_format": "gptq", "desc_act": True, "group_size": GROUP,
                "quant_method": "gptq", "static_groups": False, "sym": True,
                "true_sequential": True}
for sub, tensors, cfg in (("gptq", gptq, dict(config, quantization_config=quantization)),
                          ("float", floats, config)):
    d = os.path.join(out, sub)
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
