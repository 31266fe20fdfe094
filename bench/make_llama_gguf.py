#!/usr/bin/env python3
"""Writes a MoIR bench checkpoint (moir-make-model's Mistral-, Mixtral- or
DeepSeek-V2-shaped bf16 folder: config.json + model.safetensors, no tokenizer) as a GGUF file that
llama.cpp loads, so that llama.cpp, ik_llama.cpp and MoIR run the same file
(not a test; bench/quantized_side_by_side.sh takes the result, or its
llama-quantize'd Q8_0 / Q4_K_M copies).

The layout is what llama.cpp's convert_hf_to_gguf.py writes for these
families (architecture "llama", Q/K rows permuted for its RoPE pairing,
experts stacked as ffn_{gate,up,down}_exps, weights bf16, norms f32; for
DeepSeek-V2, architecture "deepseek2": MLA as attn_q, attn_kv_a_mqa,
attn_kv_a_norm and one attn_kv_b, the shared experts as ffn_*_shexp, no
permutation, since its RoPE already pairs adjacent dimensions). The
checkpoints have no tokenizer (random weights, token ids only), so the file
gets a placeholder SentencePiece vocabulary of vocab_size entries: <unk>, <s>,
</s>, the 256 byte tokens, then "t<id>". llama-bench and moir-run --tokens
never tokenize text.

Needs numpy and the gguf package (PyPI, or a llama.cpp checkout's gguf-py on
PYTHONPATH).

    python3 bench/make_llama_gguf.py build/models/mixtral-bench-bf16 mixtral-bench-bf16.gguf
    llama-quantize mixtral-bench-bf16.gguf mixtral-bench-Q4_K_M.gguf Q4_K_M
"""

import json
import struct
import sys

import numpy as np
import gguf


def read_safetensors(path):
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        base = 8 + size
    data = np.memmap(path, dtype=np.uint8, mode="r")
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin: base + end]
        dtype = {"BF16": np.uint16, "F32": np.float32, "F16": np.float16}.get(info["dtype"])
        if dtype is None:
            sys.exit(f"{path}: tensor {name}: dtype {info['dtype']} is not supported here")
        tensors[name] = (info["dtype"], raw.view(dtype).reshape(info["shape"]))
    return tensors


def permute(w, heads):
    """llama.cpp's converter reorders Q/K rows so RoPE pairs (2i, 2i+1)."""
    return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    folder, out = sys.argv[1], sys.argv[2]
    cfg = json.load(open(f"{folder}/config.json"))
    family = cfg["model_type"]
    if family not in ("mistral", "mixtral", "llama", "deepseek_v2"):
        sys.exit(f"{folder}/config.json: model_type {family!r}: only llama, mistral, "
                 "mixtral and deepseek_v2 shapes are written here")
    deepseek = family == "deepseek_v2"
    if deepseek and (cfg.get("q_lora_rank") or cfg.get("scoring_func", "softmax") != "softmax"
                     or cfg.get("topk_method", "greedy") != "greedy" or cfg.get("rope_scaling")):
        sys.exit(f"{folder}/config.json: only DeepSeek-V2-Lite's form (no q_lora_rank, softmax "
                 "scores, greedy top-k, no rope_scaling) is written here")
    sd = read_safetensors(f"{folder}/model.safetensors")
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // H
    w = gguf.GGUFWriter(out, "deepseek2" if deepseek else "llama")
    w.add_name(folder.rstrip("/").split("/")[-1])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(cfg["qk_rope_head_dim"] if deepseek else head_dim)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_vocab_size(cfg["vocab_size"])
    if family == "mixtral":
        w.add_expert_count(cfg["num_local_experts"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
    if deepseek:
        w.add_leading_dense_block_count(cfg["first_k_dense_replace"])
        w.add_kv_lora_rank(cfg["kv_lora_rank"])
        w.add_key_length(cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"])
        w.add_value_length(cfg["v_head_dim"])
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
        w.add_expert_count(cfg["n_routed_experts"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
        w.add_expert_shared_count(cfg["n_shared_experts"])
        w.add_expert_weights_scale(cfg.get("routed_scaling_factor", 1.0))
        w.add_expert_weights_norm(cfg.get("norm_topk_prob", False))
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
        # llama.cpp's deepseek2 loader requires it; 0 leaves the attention
        # scale 1 / sqrt(key_length) (no YaRN here).
        w.add_rope_scaling_yarn_log_mul(0.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    # The placeholder vocabulary.
    V = cfg["vocab_size"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + \
        [gguf.TokenType.BYTE] * 256
    if V < len(tokens):
        sys.exit(f"{folder}/config.json: vocab_size {V} is smaller than the {len(tokens)} "
                 "special and byte tokens")
    tokens += [f"t{i}" for i in range(len(tokens), V)]
    types += [gguf.TokenType.NORMAL] * (V - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * V)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def put(name, key, transform=None):
        dtype, arr = sd[key] if isinstance(key, str) else key
        if transform is not None:
            arr = transform(arr)
        if name.endswith("norm.weight"):
            arr = arr.astype(np.uint32) << 16 if dtype == "BF16" else arr
            arr = np.ascontiguousarray(arr).view(np.float32) if dtype == "BF16" else arr.astype(np.float32)
            w.add_tensor(name, np.ascontiguousarray(arr))
        elif dtype == "BF16":
            w.add_tensor(name, np.ascontiguousarray(arr), raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, np.ascontiguousarray(arr.astype(np.float32)))

    def stacked(keys):
        """The experts' matrices as one [experts, rows, cols] tensor (put's form)."""
        return sd[keys[0]][0], np.stack([sd[k][1] for k in keys])

    put("token_embd.weight", "model.embed_tokens.weight")
    put("output_norm.weight", "model.norm.weight")
    put("output.weight", "lm_head.weight" if "lm_head.weight" in sd else "model.embed_tokens.weight")
    for l in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        put(b + "attn_norm.weight", p + "input_layernorm.weight")
        put(b + "ffn_norm.weight", p + "post_attention_layernorm.weight")
        a = p + "self_attn."
        if deepseek:
            put(b + "attn_q.weight", a + "q_proj.weight")
            put(b + "attn_kv_a_mqa.weight", a + "kv_a_proj_with_mqa.weight")
            put(b + "attn_kv_a_norm.weight", a + "kv_a_layernorm.weight")
            put(b + "attn_kv_b.weight", a + "kv_b_proj.weight")
        else:
            put(b + "attn_q.weight", a + "q_proj.weight", lambda x: permute(x, H))
            put(b + "attn_k.weight", a + "k_proj.weight", lambda x: permute(x, KV))
            put(b + "attn_v.weight", a + "v_proj.weight")
        put(b + "attn_output.weight", a + "o_proj.weight")
        if deepseek and l >= cfg["first_k_dense_replace"]:
            moe = p + "mlp."
            put(b + "ffn_gate_inp.weight", moe + "gate.weight")
            for n in ("gate", "up", "down"):
                put(b + f"ffn_{n}_exps.weight",
                    stacked([moe + f"experts.{e}.{n}_proj.weight"
                             for e in range(cfg["n_routed_experts"])]))
                put(b + f"ffn_{n}_shexp.weight", moe + f"shared_experts.{n}_proj.weight")
        elif family == "mixtral":
            moe = p + "block_sparse_moe."
            put(b + "ffn_gate_inp.weight", moe + "gate.weight")
            for n, g in (("w1", "gate"), ("w3", "up"), ("w2", "down")):
                put(b + f"ffn_{g}_exps.weight",
                    stacked([moe + f"experts.{e}.{n}.weight"
                             for e in range(cfg["num_local_experts"])]))
        else:
            for n in ("gate", "up", "down"):
                put(b + f"ffn_{n}.weight", p + f"mlp.{n}_proj.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
