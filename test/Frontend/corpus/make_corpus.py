#!/usr/bin/env python3
"""Writes the malformed-input corpus (and two small valid files that seed the
fuzzers). Standard library only. The files are committed; rerun to refresh:

    python3 test/Frontend/corpus/make_corpus.py

Each case is a folder (checkpoint cases: config.json + model.safetensors) or
a .gguf file; test/Frontend/malformed-input.test states the message each
must produce.
"""

import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "hidden_act": "silu",
}

SHAPES = {
    "model.embed_tokens.weight": [16, 8],
    "model.layers.0.input_layernorm.weight": [8],
    "model.layers.0.self_attn.q_proj.weight": [8, 8],
    "model.layers.0.self_attn.k_proj.weight": [4, 8],
    "model.layers.0.self_attn.v_proj.weight": [4, 8],
    "model.layers.0.self_attn.o_proj.weight": [8, 8],
    "model.layers.0.post_attention_layernorm.weight": [8],
    "model.layers.0.mlp.gate_proj.weight": [12, 8],
    "model.layers.0.mlp.up_proj.weight": [12, 8],
    "model.layers.0.mlp.down_proj.weight": [8, 12],
    "model.norm.weight": [8],
}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


WIDTH = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "I8": 1, "I32": 4, "I64": 8}


def safetensors_bytes(shapes, dtype="F32", width=4, header_edit=None, data_cut=0, dtypes=None,
                      contents=None):
    """dtypes maps a tensor name to its dtype (default `dtype`); contents to
    its bytes (default a fixed pattern)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        t = (dtypes or {}).get(name, dtype)
        size = numel(shape) * WIDTH.get(t, width)
        header[name] = {"dtype": t, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if header_edit:
        header_edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    data = bytearray((i * 37) % 251 for i in range(offset))
    for name, value in (contents or {}).items():
        start, end = header[name]["data_offsets"]
        assert len(value) == end - start, name
        data[start:end] = value
    blob = struct.pack("<Q", len(text)) + text + bytes(data)
    return blob[:len(blob) - data_cut] if data_cut else blob


def checkpoint(name, config=CONFIG, weights=None):
    d = os.path.join(HERE, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(config if isinstance(config, str) else json.dumps(config, indent=1))
    if weights is not None:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(weights)


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == 4:
        out += struct.pack("<I", value)
    elif vtype == 6:
        out += struct.pack("<f", value)
    elif vtype == 8:
        out += gguf_string(value)
    return out


GGUF_META = [
    ("general.architecture", 8, "llama"), ("llama.embedding_length", 4, 8),
    ("llama.block_count", 4, 1), ("llama.feed_forward_length", 4, 12),
    ("llama.attention.head_count", 4, 2), ("llama.attention.head_count_kv", 4, 1),
    ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
    ("llama.rope.freq_base", 6, 10000.0),
]

GGUF_TENSORS = {
    "token_embd.weight": [16, 8], "blk.0.attn_norm.weight": [8],
    "blk.0.attn_q.weight": [8, 8], "blk.0.attn_k.weight": [4, 8],
    "blk.0.attn_v.weight": [4, 8], "blk.0.attn_output.weight": [8, 8],
    "blk.0.ffn_norm.weight": [8], "blk.0.ffn_gate.weight": [12, 8],
    "blk.0.ffn_up.weight": [12, 8], "blk.0.ffn_down.weight": [8, 12],
    "output_norm.weight": [8],
}


# ggml type: (id, elements per block, bytes per block)
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q8_0": (8, 32, 34),
        "Q4_K": (12, 256, 144), "Q6_K": (14, 256, 210), "Q4_1": (3, 32, 20),
        "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q5_K": (13, 256, 176),
        "Q3_K": (11, 256, 110)}


def gguf_bytes(meta=GGUF_META, tensors=GGUF_TENSORS, version=3, magic=b"GGUF",
               tensor_count=None, edit_info=None, cut=0, ggml_type=0, types=None):
    """types maps a tensor name to a GGML key (default: ggml_type, F32 sizes)."""
    infos, offset = [], 0
    for name, shape in tensors.items():
        tid, block, width = GGML[(types or {}).get(name, "F32")]
        info = {"name": name, "ne": list(reversed(shape)), "type": tid if types else ggml_type,
                "offset": offset}
        if edit_info:
            edit_info(info)
        infos.append(info)
        size = numel(shape) // block * width
        offset += size + (-size % 32)
    out = magic + struct.pack("<I", version)
    out += struct.pack("<QQ", len(infos) if tensor_count is None else tensor_count, len(meta))
    for key, vtype, value in meta:
        out += gguf_kv(key, vtype, value)
    for info in infos:
        out += gguf_string(info["name"]) + struct.pack("<I", len(info["ne"]))
        out += b"".join(struct.pack("<Q", d) for d in info["ne"])
        out += struct.pack("<IQ", info["type"], info["offset"])
    out += b"\0" * (-len(out) % 32)
    out += bytes((i * 11) % 251 for i in range(offset))
    return out[:len(out) - cut] if cut else out


def write(name, blob):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(blob)


def main():
    # Valid seeds.
    checkpoint("valid-llama", weights=safetensors_bytes(SHAPES))
    write("valid-llama.gguf", gguf_bytes())

    # Valid checkpoints in the other stored precisions.
    matrices = [n for n, sh in SHAPES.items() if len(sh) == 2 and "embed" not in n]
    checkpoint("valid-llama-bf16", weights=safetensors_bytes(SHAPES, dtype="BF16"))
    fp8 = dict(SHAPES, **{n + "_scale_inv": [1, 1] for n in matrices})
    checkpoint("valid-llama-fp8", dict(CONFIG, quantization_config={
        "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
        "weight_block_size": [128, 128]}),
        safetensors_bytes(fp8, dtypes={n: "F8_E4M3" for n in matrices}))
    i8 = dict(SHAPES, **{n + "_scale": [SHAPES[n][0]] for n in matrices})
    checkpoint("valid-llama-int8", weights=safetensors_bytes(i8, dtypes={n: "I8" for n in matrices}))
    qmeta = [("general.architecture", 8, "llama"), ("llama.embedding_length", 4, 256),
             ("llama.block_count", 4, 1), ("llama.feed_forward_length", 4, 256),
             ("llama.attention.head_count", 4, 2), ("llama.attention.head_count_kv", 4, 1),
             ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5)]
    qshapes = {"token_embd.weight": [16, 256], "blk.0.attn_norm.weight": [256],
               "blk.0.attn_q.weight": [256, 256], "blk.0.attn_k.weight": [128, 256],
               "blk.0.attn_v.weight": [128, 256], "blk.0.attn_output.weight": [256, 256],
               "blk.0.ffn_norm.weight": [256], "blk.0.ffn_gate.weight": [256, 256],
               "blk.0.ffn_up.weight": [256, 256], "blk.0.ffn_down.weight": [256, 256],
               "output_norm.weight": [256]}
    write("valid-llama-quant.gguf", gguf_bytes(meta=qmeta, tensors=qshapes, types={
        "token_embd.weight": "F16", "blk.0.attn_q.weight": "Q8_0", "blk.0.attn_k.weight": "Q4_0",
        "blk.0.attn_v.weight": "Q4_K", "blk.0.attn_output.weight": "Q6_K",
        "blk.0.ffn_gate.weight": "Q4_K", "blk.0.ffn_up.weight": "Q8_0",
        "blk.0.ffn_down.weight": "Q6_K"}))
    write("valid-llama-quant5.gguf", gguf_bytes(meta=qmeta, tensors=qshapes, types={
        "token_embd.weight": "F16", "blk.0.attn_q.weight": "Q4_1", "blk.0.attn_k.weight": "Q5_0",
        "blk.0.attn_v.weight": "Q5_1", "blk.0.attn_output.weight": "Q5_K",
        "blk.0.ffn_gate.weight": "Q5_K", "blk.0.ffn_up.weight": "Q4_1",
        "blk.0.ffn_down.weight": "Q5_0"}))
    # The reader stops at the Q3_K tensor's info: the data need not be there.
    q3k = gguf_bytes(meta=qmeta, tensors=qshapes, types={
        "token_embd.weight": "F16", "blk.0.ffn_down.weight": "Q3_K"})
    write("gguf-q3k.gguf", q3k[:q3k.index(b"output_norm.weight")])

    # A 64-wide Llama: float, AWQ and GPTQ (4-bit, groups of 32 inputs).
    wide = dict(CONFIG, hidden_size=64, intermediate_size=64)
    wide_shapes = {n: [64 if d in (8, 12) else 32 if d == 4 else d for d in sh]
                   for n, sh in SHAPES.items()}
    checkpoint("valid-llama-64", wide, safetensors_bytes(wide_shapes))
    def int4(awq, g_idx=None, base_shapes=wide_shapes):
        """g_idx(name, cols) -> the group of each input (default k // 32)."""
        shapes, dtypes, contents = {}, {}, {}
        linears = [n for n in base_shapes if len(base_shapes[n]) == 2 and "embed" not in n
                   and not n.endswith("block_sparse_moe.gate.weight")]
        for n, sh in base_shapes.items():
            if n not in linears:
                shapes[n] = sh
                continue
            base, (rows, cols) = n[:-len(".weight")], sh
            shapes[base + ".qweight"] = [cols, rows // 8] if awq else [cols // 8, rows]
            shapes[base + ".qzeros"] = [cols // 32, rows // 8]
            shapes[base + ".scales"] = [cols // 32, rows]
            dtypes.update({base + ".qweight": "I32", base + ".qzeros": "I32", base + ".scales": "F16"})
            if not awq:
                shapes[base + ".g_idx"] = [cols]
                dtypes[base + ".g_idx"] = "I32"
                groups = g_idx(n, cols) if g_idx else [k // 32 for k in range(cols)]
                contents[base + ".g_idx"] = struct.pack(f"<{cols}i", *groups)
        return safetensors_bytes(shapes, dtypes=dtypes, contents=contents)
    awq = {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True,
           "version": "gemm", "modules_to_not_convert": None}
    gptq = {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True,
            "checkpoint_format": "gptq", "damp_percent": 0.01, "true_sequential": True,
            "static_groups": False, "model_name_or_path": None, "model_file_base_name": None}
    checkpoint("valid-llama-awq", dict(wide, quantization_config=awq), int4(True))
    checkpoint("valid-llama-gptq", dict(wide, quantization_config=gptq), int4(False))
    checkpoint("ckpt-awq-gemv", dict(wide, quantization_config=dict(awq, version="gemv")), int4(True))
    checkpoint("ckpt-gptq-8bit", dict(wide, quantization_config=dict(gptq, bits=8)), int4(False))
    # Act-order GPTQ (desc_act): groups of 32 inputs that are not contiguous
    # (here: even inputs group 0, odd ones group 1) import, sorted; g_idx out
    # of range, groups that do not fill blocks of 32, and an expert whose
    # gate and up orders differ are refused naming the tensor.
    act_order = dict(gptq, desc_act=True)
    checkpoint("valid-llama-gptq-act-order", dict(wide, quantization_config=act_order),
               int4(False, lambda n, cols: [k % 2 for k in range(cols)]))
    checkpoint("ckpt-gptq-act-order-range", dict(wide, quantization_config=act_order),
               int4(False, lambda n, cols: [k % 2 if k != 5 else 2 for k in range(cols)]))
    checkpoint("ckpt-gptq-act-order-uneven", dict(wide, quantization_config=act_order),
               int4(False, lambda n, cols: [0 if k < 40 else 1 for k in range(cols)]
                    if "v_proj" in n else [k // 32 for k in range(cols)]))
    mixtral = dict(wide, architectures=["MixtralForCausalLM"], model_type="mixtral",
                   num_local_experts=2, num_experts_per_tok=1)
    mixtral_shapes = {n: sh for n, sh in wide_shapes.items() if ".mlp." not in n}
    mixtral_shapes["model.layers.0.block_sparse_moe.gate.weight"] = [2, 64]
    for e in range(2):
        for w in ("w1", "w2", "w3"):
            mixtral_shapes[f"model.layers.0.block_sparse_moe.experts.{e}.{w}.weight"] = [64, 64]
    checkpoint("ckpt-gptq-act-order-experts", dict(mixtral, quantization_config=act_order),
               int4(False, lambda n, cols: [(k + (".w3." in n)) % 2 for k in range(cols)],
                    mixtral_shapes))
    checkpoint("ckpt-quant-method", dict(wide, quantization_config={"quant_method": "bitsandbytes"}),
               int4(False))
    checkpoint("ckpt-awq-wrong-layout", dict(wide, quantization_config=awq), int4(False))
    # compressed-tensors: INT8 per channel runs, and W8A8 with dynamic
    # per-token or static per-tensor activations (test/e2e/w8a8.test);
    # static per-token or grouped activation scales and group weight scales
    # are refused naming the key, and a static scheme without its
    # input_scale tensors naming the tensor.
    ct_weights = {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True,
                  "dynamic": False, "group_size": None, "block_structure": None,
                  "actorder": None, "observer": "minmax", "observer_kwargs": {}}
    def ct(weights=ct_weights, inputs=None):
        return {"quant_method": "compressed-tensors", "format": "int-quantized",
                "quantization_status": "compressed", "ignore": ["lm_head"],
                "kv_cache_scheme": None,
                "config_groups": {"group_0": {"format": "int-quantized", "targets": ["Linear"],
                                              "weights": weights, "input_activations": inputs,
                                              "output_activations": None}}}
    w8a8_inputs = {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": True,
                   "symmetric": True}
    checkpoint("ckpt-ct-w8a8-static-token", dict(wide, quantization_config=ct(
        inputs=dict(w8a8_inputs, dynamic=False))), int4(False))
    checkpoint("ckpt-ct-w8a8-group", dict(wide, quantization_config=ct(
        inputs=dict(w8a8_inputs, strategy="group", group_size=128))), int4(False))
    checkpoint("ckpt-ct-w8a8-asymmetric", dict(wide, quantization_config=ct(
        inputs=dict(w8a8_inputs, symmetric=False))), int4(False))
    # W8A8 as compressed-tensors 0.20.1 itself serializes it
    # (ModelCompressor.update_config: QuantizationConfig.model_dump, null
    # and default arguments left out, `sparsity_config` and
    # `transform_config` {}, `moe_sparsity_config` null, its version): it
    # imports. A sparse format or a transform is refused naming the key.
    def ct_serialized(**top):
        int8 = {"num_bits": 8, "type": "int", "symmetric": True, "group_size": None}
        return dict({
            "config_groups": {"group_0": {
                "format": None, "targets": ["Linear"], "output_activations": None,
                "input_activations": dict(int8, strategy="token", dynamic=True),
                "weights": dict(int8, strategy="channel", dynamic=False)}},
            "format": "int-quantized", "global_compression_ratio": None, "ignore": ["lm_head"],
            "kv_cache_scheme": None, "moe_sparsity_config": None,
            "quant_method": "compressed-tensors", "quantization_status": "compressed",
            "sparsity_config": {}, "transform_config": {}, "version": "0.20.1"}, **top)
    int8_shapes, int8_dtypes = {}, {}
    for n, sh in wide_shapes.items():
        int8_shapes[n] = sh
        if len(sh) == 2 and "embed" not in n:
            int8_dtypes[n] = "I8"
            int8_shapes[n[:-len("weight")] + "weight_scale"] = [sh[0], 1]
    int8_weights = safetensors_bytes(int8_shapes, dtypes=int8_dtypes)
    checkpoint("valid-llama-ct-w8a8-serialized", dict(wide, quantization_config=ct_serialized()),
               int8_weights)
    checkpoint("ckpt-ct-w8a8-static", dict(wide, quantization_config=ct(
        inputs=dict(w8a8_inputs, strategy="tensor", dynamic=False))), int8_weights)
    checkpoint("ckpt-ct-sparse-24", dict(wide, quantization_config=ct_serialized(
        sparsity_config={"format": "sparse-24-bitmask", "global_sparsity": 0.5,
                         "sparsity_structure": "2:4", "targets": ["Linear"], "ignore": []})),
               int8_weights)
    checkpoint("ckpt-ct-transform", dict(wide, quantization_config=ct_serialized(
        transform_config={"config_groups": {"u": {"type": "hadamard"}}})), int8_weights)

    # W8A8 with a shared expert (Qwen2-MoE): its inputs are quantized as the
    # routed experts' are (imports). Refused, naming the tensor: a float
    # shared expert beside quantized routed ones, and a quantized
    # shared_expert_gate (the gate reads x unquantized).
    qwen2 = dict(CONFIG, architectures=["Qwen2MoeForCausalLM"], model_type="qwen2_moe",
                 hidden_size=32, intermediate_size=32, num_attention_heads=2,
                 num_key_value_heads=1, num_experts=2, num_experts_per_tok=1,
                 moe_intermediate_size=32, shared_expert_intermediate_size=32,
                 decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=False,
                 qkv_bias=True, tie_word_embeddings=True,
                 quantization_config=dict(ct(inputs=w8a8_inputs),
                                          ignore=["lm_head", "re:.*mlp.gate$",
                                                  "re:.*shared_expert_gate$"]))
    qwen2_shapes, qwen2_dtypes = {}, {}
    qwen2_linears = {"self_attn.q_proj": [32, 32], "self_attn.k_proj": [16, 32],
                     "self_attn.v_proj": [16, 32], "self_attn.o_proj": [32, 32]}
    for e in range(2):
        qwen2_linears.update({f"mlp.experts.{e}.gate_proj": [32, 32],
                              f"mlp.experts.{e}.up_proj": [32, 32],
                              f"mlp.experts.{e}.down_proj": [32, 32]})
    qwen2_linears.update({"mlp.shared_expert.gate_proj": [32, 32],
                          "mlp.shared_expert.up_proj": [32, 32],
                          "mlp.shared_expert.down_proj": [32, 32]})
    for n, sh in qwen2_linears.items():
        base = "model.layers.0." + n
        qwen2_shapes[base + ".weight"] = sh
        qwen2_dtypes[base + ".weight"] = "I8"
        qwen2_shapes[base + ".weight_scale"] = [sh[0], 1]
    qwen2_shapes.update({
        "model.embed_tokens.weight": [16, 32], "model.norm.weight": [32],
        "model.layers.0.input_layernorm.weight": [32],
        "model.layers.0.post_attention_layernorm.weight": [32],
        "model.layers.0.self_attn.q_proj.bias": [32], "model.layers.0.self_attn.k_proj.bias": [16],
        "model.layers.0.self_attn.v_proj.bias": [16], "model.layers.0.mlp.gate.weight": [2, 32],
        "model.layers.0.mlp.shared_expert_gate.weight": [1, 32]})
    checkpoint("valid-qwen2moe-ct-w8a8-shared-expert", qwen2,
               safetensors_bytes(qwen2_shapes, dtypes=qwen2_dtypes))
    float_shared_shapes, float_shared_dtypes = dict(qwen2_shapes), dict(qwen2_dtypes)
    for n in ("gate_proj", "up_proj", "down_proj"):
        base = "model.layers.0.mlp.shared_expert." + n
        del float_shared_shapes[base + ".weight_scale"], float_shared_dtypes[base + ".weight"]
    checkpoint("ckpt-ct-w8a8-float-shared-expert", qwen2,
               safetensors_bytes(float_shared_shapes, dtypes=float_shared_dtypes))
    gate_shapes, gate_dtypes = dict(qwen2_shapes), dict(qwen2_dtypes)
    gate_dtypes["model.layers.0.mlp.shared_expert_gate.weight"] = "I8"
    gate_shapes["model.layers.0.mlp.shared_expert_gate.weight_scale"] = [1, 1]
    checkpoint("ckpt-ct-w8a8-quantized-shared-gate", qwen2,
               safetensors_bytes(gate_shapes, dtypes=gate_dtypes))

    # W8A8 on DeepSeek (the ct_fp8_dynamic_deepseek fixture's config and
    # tensors) with one MLA projection left float: MLA quantizes the inputs
    # of all its projections or of none; refused naming the tensor.
    fixture = os.path.join(HERE, "..", "..", "fixtures", "quant", "ct_fp8_dynamic_deepseek")
    with open(os.path.join(fixture, "config.json")) as f:
        ds_config = json.load(f)
    with open(os.path.join(fixture, "model.safetensors"), "rb") as f:
        ds_header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    ds_header.pop("__metadata__", None)
    kvb = "model.layers.1.self_attn.kv_b_proj.weight"
    ds_shapes = {n: t["shape"] for n, t in ds_header.items() if n != kvb + "_scale"}
    ds_dtypes = {n: t["dtype"] for n, t in ds_header.items()}
    ds_dtypes[kvb] = "BF16"
    checkpoint("ckpt-ct-w8a8-mla-float-projection", ds_config,
               safetensors_bytes(ds_shapes, dtypes=ds_dtypes))
    checkpoint("ckpt-ct-fp8-int-weights", dict(wide, quantization_config=dict(
        ct(inputs=dict(w8a8_inputs, type="float")), format="float-quantized",
        config_groups={"group_0": dict(ct()["config_groups"]["group_0"],
                                       format="float-quantized")})), int4(False))
    checkpoint("ckpt-ct-group", dict(wide, quantization_config=ct(
        dict(ct_weights, strategy="group", group_size=128))), int4(False))

    # compressed-tensors pack-quantized (W4A16): 4-bit codes in int32 along
    # the inputs, groups of 32; refused: 2-bit codes, act-order groups,
    # asymmetric weights without their zero points.
    def packed4(zero_points):
        shapes, dtypes, contents = {}, {}, {}
        for n, sh in wide_shapes.items():
            if len(sh) != 2 or "embed" in n:
                shapes[n] = sh
                continue
            base, (rows, cols) = n[:-len("weight")], sh
            shapes[base + "weight_packed"] = [rows, cols // 8]
            shapes[base + "weight_scale"] = [rows, cols // 32]
            shapes[base + "weight_shape"] = [2]
            dtypes.update({base + "weight_packed": "I32", base + "weight_scale": "F16",
                           base + "weight_shape": "I64"})
            contents[base + "weight_shape"] = struct.pack("<2q", rows, cols)
            if zero_points:
                shapes[base + "weight_zero_point"] = [(rows + 7) // 8, cols // 32]
                dtypes[base + "weight_zero_point"] = "I32"
        return safetensors_bytes(shapes, dtypes=dtypes, contents=contents)
    w4 = dict(ct_weights, num_bits=4, strategy="group", group_size=32)
    def ct4(weights=w4):
        q = ct(weights)
        q["format"] = q["config_groups"]["group_0"]["format"] = "pack-quantized"
        return q
    checkpoint("valid-llama-ct-w4a16", dict(wide, quantization_config=ct4()), packed4(False))
    checkpoint("ckpt-ct-pack-2bit", dict(wide, quantization_config=ct4(dict(w4, num_bits=2))),
               packed4(False))
    checkpoint("ckpt-ct-pack-actorder", dict(wide, quantization_config=ct4(
        dict(w4, actorder="group"))), packed4(False))
    checkpoint("ckpt-ct-pack-no-zero-point", dict(wide, quantization_config=ct4(
        dict(w4, symmetric=False))), packed4(False))

    checkpoint("ckpt-fp8-no-scale", weights=safetensors_bytes(
        SHAPES, dtypes={"model.layers.0.self_attn.q_proj.weight": "F8_E4M3"}))

    # safetensors container errors.
    checkpoint("st-truncated-length", weights=b"\x10\0\0\0\0")
    checkpoint("st-header-past-end", weights=struct.pack("<Q", 1000) + b"{}")
    checkpoint("st-bad-json", weights=struct.pack("<Q", 9) + b"{\"a\": [1,")
    checkpoint("st-not-object", weights=struct.pack("<Q", 2) + b"[]")
    checkpoint("st-bad-dtype", weights=safetensors_bytes(
        SHAPES, header_edit=lambda h: h["model.norm.weight"].update(dtype="F64")))
    checkpoint("st-negative-dim", weights=safetensors_bytes(
        SHAPES, header_edit=lambda h: h["model.norm.weight"].update(shape=[-8])))
    checkpoint("st-offsets-past-end", weights=safetensors_bytes(
        SHAPES, header_edit=lambda h: h["model.norm.weight"].update(data_offsets=[0, 1 << 20])))
    checkpoint("st-size-mismatch", weights=safetensors_bytes(
        SHAPES, header_edit=lambda h: h["model.norm.weight"].update(shape=[9])))
    def overlap(h):
        a = h["model.layers.0.self_attn.q_proj.weight"]["data_offsets"]
        h["model.layers.0.self_attn.k_proj.weight"]["data_offsets"] = [a[0] + 4, a[0] + 4 + 128]
    checkpoint("st-overlap", weights=safetensors_bytes(SHAPES, header_edit=overlap))
    checkpoint("st-truncated-data", weights=safetensors_bytes(SHAPES, data_cut=100))

    # Checkpoint-level errors.
    checkpoint("ckpt-unknown-arch", dict(CONFIG, architectures=["GPT2LMHeadModel"]),
               safetensors_bytes(SHAPES))
    checkpoint("ckpt-wrong-json-type", dict(CONFIG, hidden_size="8"), safetensors_bytes(SHAPES))
    checkpoint("ckpt-unsupported-key", dict(CONFIG, logit_softcapping=30.0), safetensors_bytes(SHAPES))
    checkpoint("ckpt-rope-dynamic", dict(CONFIG, rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
               safetensors_bytes(SHAPES))
    checkpoint("ckpt-bad-json", '{"architectures": ["LlamaForCausalLM"], ', safetensors_bytes(SHAPES))
    missing = dict(SHAPES)
    del missing["model.layers.0.mlp.up_proj.weight"]
    checkpoint("ckpt-missing-tensor", weights=safetensors_bytes(missing))
    checkpoint("ckpt-shape-mismatch", weights=safetensors_bytes(
        dict(SHAPES, **{"model.layers.0.self_attn.k_proj.weight": [8, 8]})))
    checkpoint("ckpt-int-weight", weights=safetensors_bytes(SHAPES, dtype="I32"))
    checkpoint("ckpt-no-weights")
    checkpoint("ckpt-kv-heads", dict(CONFIG, num_key_value_heads=3), safetensors_bytes(SHAPES))
    # A shard index naming a shard that does not hold the tensor.
    d = os.path.join(HERE, "ckpt-bad-index")
    checkpoint("ckpt-bad-index")
    with open(os.path.join(d, "model-00001-of-00001.safetensors"), "wb") as f:
        f.write(safetensors_bytes(missing))
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": dict(
            {n: "model-00001-of-00001.safetensors" for n in SHAPES})}, f)

    # GGUF errors.
    write("gguf-bad-magic.gguf", gguf_bytes(magic=b"GGML"))
    write("gguf-version1.gguf", gguf_bytes(version=1))
    write("gguf-truncated-metadata.gguf", gguf_bytes()[:60])
    write("gguf-huge-tensor-count.gguf", gguf_bytes(tensor_count=1 << 60))
    write("gguf-bad-ggml-type.gguf", gguf_bytes(
        edit_info=lambda i: i.update(type=99) if i["name"] == "output_norm.weight" else None))
    write("gguf-misaligned.gguf", gguf_bytes(
        edit_info=lambda i: i.update(offset=i["offset"] + 4) if i["name"] == "output_norm.weight" else None))
    write("gguf-offset-past-end.gguf", gguf_bytes(
        edit_info=lambda i: i.update(offset=1 << 30) if i["name"] == "output_norm.weight" else None))
    write("gguf-overlap.gguf", gguf_bytes(
        edit_info=lambda i: i.update(offset=0) if i["name"] == "blk.0.attn_q.weight" else None))
    write("gguf-truncated-data.gguf", gguf_bytes(cut=64))
    write("gguf-bad-block.gguf", gguf_bytes(ggml_type=8))
    write("gguf-unknown-arch.gguf", gguf_bytes(meta=[("general.architecture", 8, "gpt2")] + GGUF_META[1:]))
    write("gguf-unknown-key.gguf", gguf_bytes(meta=GGUF_META + [("llama.attn_logit_softcapping", 6, 30.0)]))
    write("gguf-zero-dim.gguf", gguf_bytes(
        edit_info=lambda i: i.update(ne=[0]) if i["name"] == "output_norm.weight" else None))
    # A ggml type MoIR cannot read (Q5_K), named as ggml names it.
    write("gguf-unsupported-type.gguf", gguf_bytes(
        edit_info=lambda i: i.update(type=13) if i["name"] == "blk.0.attn_q.weight" else None))
    # A tensor the import has no use for is refused, not ignored.
    write("gguf-unused-tensor.gguf", gguf_bytes(
        tensors=dict(GGUF_TENSORS, **{"blk.0.attn_q_norm.weight": [4]})))
    # llama3 RoPE scaling as rope_freqs.weight needs one divisor per rotated pair.
    write("gguf-rope-freqs-shape.gguf", gguf_bytes(
        tensors=dict(GGUF_TENSORS, **{"rope_freqs.weight": [3]})))

    # llama.cpp's converter writes Qwen2-MoE's shared-expert gate as [1, hidden].
    q2meta = [("general.architecture", 8, "qwen2moe"), ("qwen2moe.embedding_length", 4, 8),
              ("qwen2moe.block_count", 4, 1), ("qwen2moe.attention.head_count", 4, 2),
              ("qwen2moe.attention.head_count_kv", 4, 1),
              ("qwen2moe.attention.layer_norm_rms_epsilon", 6, 1e-5),
              ("qwen2moe.rope.freq_base", 6, 10000.0), ("qwen2moe.expert_count", 4, 2),
              ("qwen2moe.expert_used_count", 4, 1),
              ("qwen2moe.expert_feed_forward_length", 4, 4),
              ("qwen2moe.expert_shared_feed_forward_length", 4, 4)]
    q2 = {n: sh for n, sh in GGUF_TENSORS.items() if "ffn_" not in n or "norm" in n}
    q2.update({"blk.0.ffn_gate_inp.weight": [2, 8], "blk.0.ffn_gate_exps.weight": [2, 4, 8],
               "blk.0.ffn_up_exps.weight": [2, 4, 8], "blk.0.ffn_down_exps.weight": [2, 8, 4],
               "blk.0.ffn_gate_shexp.weight": [4, 8], "blk.0.ffn_up_shexp.weight": [4, 8],
               "blk.0.ffn_down_shexp.weight": [8, 4], "blk.0.ffn_gate_inp_shexp.weight": [1, 8]})
    # Gemma 3 with Gemma 2's final logit softcapping: refused by name.
    g3meta = [("general.architecture", 8, "gemma3")] + [
        (k.replace("llama.", "gemma3."), t, v) for k, t, v in GGUF_META[1:]] + [
        ("gemma3.attention.key_length", 4, 4), ("gemma3.attention.sliding_window", 4, 4),
        ("gemma3.final_logit_softcapping", 6, 30.0)]
    write("gguf-gemma3-softcap.gguf", gguf_bytes(meta=g3meta))
    write("valid-qwen2moe-shexp-row.gguf", gguf_bytes(meta=q2meta, tensors=q2))
    write("gguf-shexp-shape.gguf", gguf_bytes(
        meta=q2meta, tensors=dict(q2, **{"blk.0.ffn_gate_inp_shexp.weight": [2, 8]})))


if __name__ == "__main__":
    main()
