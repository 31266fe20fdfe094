#!/usr/bin/env python3
"""Greedy agreement of a compiled Gemma 3 GGUF with transformers and llama.cpp.

transformers runs the GGUF's own weights: every tensor dequantized to f32 with
gguf-py, renamed to Hugging Face's names, the norm weights minus the 1 llama.cpp's
converter added (Gemma3RMSNorm adds it back), and a Gemma3ForCausalLM config built
from the metadata (query_pre_attn_scalar = key_length, as llama.cpp assumes below
the 27B). So a difference from transformers is MoIR's own, while llama.cpp's tokens
(test/fixtures/gemma3/llama_cpp_greedy.json, when present) also carry its
arithmetic: activations rounded to 8 bits in its quantized dot products, an f16 KV
cache.

    python bench/gemma3_agreement.py MODEL.gguf ARTIFACT.moir [--moir-run build/bin/moir-run]
        [--greedy test/fixtures/gemma3/llama_cpp_greedy.json] [-n 80]

Needs torch, transformers, safetensors, gguf and numpy (not the tests).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[2, 818, 5279, 529, 7001, 563]]  # "The capital of France is" (2 is BOS)

LAYER_NAMES = {
    "attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj"}


def to_hf(gguf_path, out):
    import gguf
    from gguf.quants import dequantize
    from safetensors.numpy import save_file
    r = gguf.GGUFReader(gguf_path)
    meta = {k: f.contents() for k, f in r.fields.items() if k.startswith("gemma3.")}
    if r.fields["general.architecture"].contents() != "gemma3":
        raise SystemExit(f"{gguf_path}: not a gemma3 GGUF")
    sd = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        a = a.reshape(tuple(int(s) for s in reversed(t.shape)))
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        else:
            _, layer, role, _ = t.name.split(".")
            name = f"model.layers.{layer}.{LAYER_NAMES[role]}.weight"
        if name.endswith("norm.weight"):
            a = a - 1.0
        sd[name] = np.ascontiguousarray(a)
    save_file(sd, os.path.join(out, "model.safetensors"))
    g = lambda k, d=None: meta.get("gemma3." + k, d)
    head_dim = g("attention.key_length")
    config = dict(
        architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
        vocab_size=sd["model.embed_tokens.weight"].shape[0], hidden_size=g("embedding_length"),
        intermediate_size=g("feed_forward_length"), num_hidden_layers=g("block_count"),
        num_attention_heads=g("attention.head_count"),
        num_key_value_heads=g("attention.head_count_kv"), head_dim=head_dim,
        rms_norm_eps=g("attention.layer_norm_rms_epsilon"), query_pre_attn_scalar=head_dim,
        sliding_window=g("attention.sliding_window"), sliding_window_pattern=6,
        rope_theta=g("rope.freq_base"), rope_local_base_freq=g("rope.freq_base_swa", 10000.0),
        max_position_embeddings=g("context_length"), tie_word_embeddings=True,
        hidden_activation="gelu_pytorch_tanh")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)


def transformers_greedy(folder, prompts, n):
    import torch
    import transformers
    torch.set_grad_enabled(False)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    result = []
    for ids in prompts:
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             output_logits=True, return_dict_in_generate=True, pad_token_id=0)
        top2 = [torch.topk(l[0], 2) for l in out.logits]
        result.append(dict(ids=out.sequences[0, len(ids):].tolist(),
                           margin=[float(v[0] - v[1]) for v, _ in top2],
                           steps=[dict(id=int(i[0]), top1=float(v[0]), top2_id=int(i[1]),
                                       top2=float(v[1])) for v, i in top2]))
    return result


def moir_greedy(moir_run, artifact, ids, n):
    out = subprocess.run([moir_run, artifact, "--tokens", ",".join(map(str, ids)), "-n", str(n),
                          "--json"], capture_output=True, text=True, check=True)
    return json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])


def agree(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("gguf")
    p.add_argument("artifact")
    p.add_argument("--moir-run", default=os.path.join(HERE, "..", "build", "bin", "moir-run"))
    p.add_argument("--greedy", default=os.path.join(HERE, "..", "test", "fixtures", "gemma3",
                                                    "llama_cpp_greedy.json"))
    p.add_argument("-n", type=int, default=80)
    p.add_argument("--write-reference", metavar="FILE",
                   help="also write transformers' greedy runs (the schema of "
                        "llama_cpp_greedy.json) for test/e2e/gemma3-270m.test")
    args = p.parse_args()
    llama = None
    if os.path.exists(args.greedy):
        with open(args.greedy) as f:
            llama = json.load(f)["prompts"]
        prompts = [q["prompt_ids"] for q in llama]
    else:
        prompts = PROMPTS
    with tempfile.TemporaryDirectory() as folder:
        to_hf(args.gguf, folder)
        reference = transformers_greedy(folder, prompts, args.n)
    if args.write_reference:
        import torch
        import transformers
        import hashlib
        with open(args.gguf, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        out = {"reference": "transformers %s, torch %s: Gemma3ForCausalLM in f32 (eager "
                            "attention) on the GGUF's weights dequantized to f32 "
                            "(bench/gemma3_agreement.py)" % (transformers.__version__,
                                                             torch.__version__),
               "gguf_sha256": sha,
               "prompts": [dict(prompt=(llama[i]["prompt"] if llama else ""), prompt_ids=ids,
                                generated_ids=r["ids"], steps=r["steps"])
                           for i, (ids, r) in enumerate(zip(prompts, reference))]}
        with open(args.write_reference, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
    totals = {"transformers": 0, "llama.cpp": 0}
    rates = []
    for i, ids in enumerate(prompts):
        got = moir_greedy(args.moir_run, args.artifact, ids, args.n)
        rates.append(got["decode_tokens_per_s"])
        line = f"prompt {i} ({len(ids)} ids):"
        for who, want in (("transformers", reference[i]["ids"]),
                          ("llama.cpp", llama[i]["generated_ids"][:args.n] if llama else None)):
            if want is None:
                continue
            k = agree(got["tokens"], want)
            totals[who] += k
            line += f" {who} {k}/{len(want)}"
            if k < len(want) and who == "transformers":
                line += f" (transformers' top-2 margin there {reference[i]['margin'][k]:.3f})"
        print(line)
    if llama:
        # The reference against llama.cpp: how far the two roundings alone part.
        k = sum(agree(r["ids"], q["generated_ids"][:args.n]) for r, q in zip(reference, llama))
        print(f"(transformers itself against llama.cpp: {k}/{args.n * len(prompts)})")
    for who, k in totals.items():
        if who == "transformers" or llama:
            print(f"{who}: {k}/{args.n * len(prompts)} greedy tokens identical before a divergence")
    print(f"moir-run decode {min(rates):.1f}-{max(rates):.1f} tokens/s")


if __name__ == "__main__":
    main()
